#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one call: install what is missing, check the CUDA paths
# against stock torchvision, and time every variant end to end at 720p and 1080p.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # OUT_DIR defaults to $OUT, else ./gpu-results
#
# Writes gpu.txt (card), tests.txt (CUDA parity tests), clips of the car footage scaled to 720p and
# 1080p, and bench-<size>.json/.txt (stock vs rtseg vs pipeline, v1/v2, fp32/fp16, batch 1/4, plus
# model.half() against autocast). Copy the tables into docs/benchmarks.md with the card and date.
set -euo pipefail
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
clip="${CLIP:-../shared/data/clips/car-detection.mp4}"

python -c "import torch, torchvision; assert torch.cuda.is_available(), 'no CUDA device'" \
    || pip install -q torch==2.14.1 torchvision==0.29.1
python -c "import av, cv2, yaml, pycocotools, scipy, tqdm, pytest, rtseg" 2>/dev/null || pip install -q -e ".[test]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
date -u +%Y-%m-%dT%H:%MZ >> "$out/gpu.txt"

# Correctness first: the CUDA-only parity tests (skipped on CPU machines) and the rest of the model tests.
python -m pytest -q -rs tests/system/test_parity.py tests/unit/detect tests/unit/render 2>&1 | tee "$out/tests.txt"

# The car clip scaled to 720p and 1080p (the first 300 frames), so decode, render and encode run at full size.
python - "$clip" "$out" <<'PY'
import sys
import av
import cv2
source, out = sys.argv[1], sys.argv[2]
for width, height in ((1280, 720), (1920, 1080)):
    with av.open(source) as inp, av.open(f"{out}/car-{height}p.mp4", "w") as dst:
        stream = dst.add_stream("libx264", rate=inp.streams.video[0].average_rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index, frame in enumerate(inp.decode(video=0)):
            if index == 300:
                break
            image = cv2.resize(frame.to_ndarray(format="rgb24"), (width, height), interpolation=cv2.INTER_CUBIC)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
PY

for height in 720 1080; do
    python scripts/benchmark.py --source "$out/car-${height}p.mp4" --device cuda --weights none \
        --models maskrcnn_v1,maskrcnn_v2 --precisions fp32,fp16 --batch-sizes 1,4 --sizes "$height" \
        --frames 120 --warmup 5 --score-threshold 0 --detections 8 --json "$out/bench-${height}.json" \
        2>&1 | tee "$out/bench-${height}.txt"
    python scripts/benchmark.py --source "$out/car-${height}p.mp4" --device cuda --weights none \
        --models maskrcnn_v1 --precisions fp16 --batch-sizes 1,4 --sizes "$height" --fp16-weights \
        --frames 120 --warmup 5 --score-threshold 0 --detections 8 --json "$out/bench-${height}-half.json" \
        2>&1 | tee "$out/bench-${height}-half.txt"
done

# Streams per GPU at 720p, fp16 (issue 15): 1, 4, 8 and 16 cameras on one engine against as many processes.
python scripts/bench_streams.py --clips "$out/car-720p.mp4" --parts model,stub --streams 1,4,8,16 --model-frames 60 \
    --model-size 720 --model-batch 8 --json "$out/streams-720.json" 2>&1 | tee "$out/streams-720.txt"

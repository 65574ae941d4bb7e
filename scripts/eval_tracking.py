#!/usr/bin/env python
"""Score rtseg's tracker on synthetic scenes with known ground truth (rtseg.offline.scenes, rtseg.offline.eval_tracking).

Scenes of 1280x720 frames (the tuning families of rtseg.offline.scenes) and a simulated
detector with known errors, and the checking generator's own scenes and detector
(rtseg.offline.check_scenes: never used to choose settings); the tracker's confirmed ids are scored with
MOTA, IDF1, ID switches and colour changes ("run": while an object is continuously
detected; "life": over its whole life), tallied by cause; a benchmark times
Tracker.update alone on 20 objects. docs/tracking.md has the figures and which seeds
were used for tuning and which for checking.

    python scripts/eval_tracking.py                    # all scenes, seeds 0 1 2
    python scripts/eval_tracking.py --seeds $(seq 10 19) --bench-frames 0   # unseen seeds
    python scripts/eval_tracking.py --json out.json    # also write every figure as JSON
    python scripts/eval_tracking.py --peers --seeds $(seq 100 119) --frames 300   # against boxmot's trackers
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtseg.core.config import TrackingConfig
from rtseg.offline.check_scenes import CHECK_SCENES
from rtseg.offline.eval_tracking import ABLATIONS, FAMILIES, PEERS, TARGET_SCENES, TARGETS, ablate, compare, evaluate
from rtseg.offline.scenes import SCENES, Noise


def main(argv: list[str] | None = None) -> int:
    defaults = Noise()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=("Default detector noise: box jitter sigma 3 px per coordinate; 8% of detectable objects missed per frame; "
                "scores from 0.25 (40% visible) to 0.95 (whole) +-0.1, and 10% of detections scoring 0.2-0.6 whatever "
                "their visibility; 3 false positives per frame (Poisson, scores 0.1-0.8), a third of them fragments of "
                "real objects; then per-class NMS at IoU 0.5, as Mask R-CNN's own output. "
                "Colour changes: 'run' counts id changes of an object within each run of frames in which it is detected "
                "every frame (from its first frame with an id); 'life' adds a change whenever it comes back from a gap "
                "in another id. "
                f"Targets on {', '.join(TARGET_SCENES)}: MOTA >= {TARGETS['mota']}, IDF1 >= {TARGETS['idf1']}; "
                f"no 'run' colour changes in any scene; tracker <= {TARGETS['ms_per_frame']} ms/frame for 20 objects."))
    parser.add_argument("--scenes", nargs="+", choices=FAMILIES, metavar="SCENE",
                        help=f"scene families to run: the tuning generator's ({', '.join(SCENES)}) and the checking "
                             f"generator's ({', '.join(CHECK_SCENES)}: 120 frames of 640x480 and their own noise, "
                             "whatever --frames and the noise options say); default: the tuning families, "
                             "and with --peers both generators'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="random seeds; each scene runs once per seed")
    parser.add_argument("--frames", type=int, default=600, help="frames per scene")
    parser.add_argument("--jitter", type=float, default=defaults.jitter, help="box noise sigma, pixels per coordinate")
    parser.add_argument("--miss", type=float, default=defaults.miss, help="chance a detectable object is missed in a frame")
    parser.add_argument("--low-score", type=float, default=defaults.low_score, help="chance a detection scores low (0.2-0.6) whatever its visibility")
    parser.add_argument("--false-positives", type=float, default=defaults.false_positives, help="mean false positives per frame")
    parser.add_argument("--fragments", type=float, default=defaults.fragments, help="share of false positives that are fragments of real objects")
    parser.add_argument("--class-flip", type=float, default=defaults.class_flip, help="chance a detection of an object has another class")
    parser.add_argument("--duplicates", type=float, default=defaults.duplicates, help="chance an object is also detected under another class")
    parser.add_argument("--agnostic-nms", type=float, default=defaults.agnostic_nms, help="the detector's class-agnostic NMS IoU (0: off)")
    parser.add_argument("--class-aware", action="store_true", help="pair detections only with tracks of their class (tracking.class_agnostic: false)")
    parser.add_argument("--appearance", action="store_true",
                        help="tracking.appearance on, with simulated appearances (distinct per object, 20%% noise)")
    parser.add_argument("--match", choices=("iou", "mask_iou"), default="iou", help="tracker overlap measure (mask_iou simulates masks: slower)")
    parser.add_argument("--bench-frames", type=int, default=2000, help="frames timed in the 20-object benchmark (0 skips it)")
    parser.add_argument("--peers", nargs="*", choices=PEERS, metavar="PEER",
                        help=f"instead of the usual table, compare rtseg's tracker with boxmot's ({', '.join(PEERS)}; "
                             "all when none is named) per scene family, with HOTA (needs boxmot and trackeval)")
    parser.add_argument("--ablate", nargs="*", choices=ABLATIONS, metavar="RULE",
                        help="instead of the usual table, run rtseg with each of its additions to ByteTrack switched "
                             f"off in turn ({', '.join(ABLATIONS)}; all when none is named): ID switches and IDF1 "
                             "per scene family")
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON to PATH ('-' for stdout)")
    args = parser.parse_args(argv)

    noise = Noise(args.jitter, args.miss, args.low_score, args.false_positives, args.fragments, args.class_flip,
                  args.duplicates, args.agnostic_nms)
    config = dataclasses.replace(TrackingConfig(), match=args.match, class_agnostic=not args.class_aware,
                                 appearance=args.appearance)
    if args.ablate is not None:
        report = ablate(args.scenes or FAMILIES, args.seeds, args.frames, noise, config, args.ablate or list(ABLATIONS))
    elif args.peers is not None:
        report = compare(args.scenes or FAMILIES, args.seeds, args.frames, noise, config, ["rtseg", *(args.peers or PEERS)])
    else:
        report = evaluate(args.scenes or SCENES, args.seeds, args.frames, noise, config, args.bench_frames)
    if args.json:
        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

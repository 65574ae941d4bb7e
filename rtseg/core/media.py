"""File-name suffixes by what rtseg does with the file: the one place each list is written.

Reading goes by what FFmpeg (videos) and OpenCV (images) decode; writing an
annotated video goes by what the MP4 sink produces, an ISO-BMFF container;
detections go to JSON Lines, statistics to JSON.
"""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv",
                  ".gif")  # videos rtseg reads (a directory or glob of them is an archive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")  # still images rtseg reads
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")  # annotated videos rtseg writes
RECORDS_SUFFIXES = (".json", ".jsonl")  # --save-json
STATS_SUFFIXES = (".json",)  # --save-stats
EVENTS_SUFFIXES = (".jsonl",)  # --events: one JSON object per line
HEATMAP_SUFFIXES = (".png",)  # --heatmap
FILE_SUFFIXES = (*MP4_SUFFIXES, *RECORDS_SUFFIXES, *HEATMAP_SUFFIXES)  # an output named so is a file, never a directory of streams

# The sample clip shipped with the repository (samples/README.md: 4.8 s of a CC BY 4.0 parking-lot clip): the default
# of the scripts and the quick start's footage, found from the package itself so that it works from any folder of a
# source checkout (an installed wheel does not carry it: pass a clip of your own there).
SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "samples" / "car.mp4"

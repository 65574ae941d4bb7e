#!/usr/bin/env python
"""Score rtseg's scene analytics against ground truth and against supervision's LineZone / PolygonZone.

Synthetic scenes with masks and track ids (rtseg/offline/analytics_scenes.py), the
same detections for every counter; per family: count errors, occupancy error and
dwell error (rtseg/offline/eval_analytics.py says exactly how each is measured).
Needs ``pip install supervision`` for the peers (``--tools rtseg`` runs without).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from rtseg.core.config import AnalyticsConfig
from rtseg.offline.analytics_scenes import FAMILIES
from rtseg.offline.eval_analytics import CHECKING_SEEDS, TOOLS, TUNING_SEEDS, evaluate, markdown_table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
BEGIN, END = "<!-- eval_analytics:begin -->", "<!-- eval_analytics:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="scene families")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(CHECKING_SEEDS),
                        help=f"seeds per family (checking seeds by default; tuning seeds are "
                             f"{TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]})")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="counters to run")
    parser.add_argument("--zone-margin", type=float, help="analytics.zone_margin (default: the setting's default)")
    parser.add_argument("--line-margin", type=float, help="analytics.line_margin (default: the setting's default)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"rewrite the table between {BEGIN} and {END} in docs/analytics.md")
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("zone_margin", args.zone_margin), ("line_margin", args.line_margin))
                 if v is not None}
    settings = dataclasses.replace(AnalyticsConfig(), **overrides)
    if set(args.seeds) & set(TUNING_SEEDS):
        print(f"note: seeds {sorted(set(args.seeds) & set(TUNING_SEEDS))} are tuning seeds", file=sys.stderr)
    report = evaluate(args.families, args.seeds, settings, args.tools)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.write_docs:
        write_docs(report, argv if argv is not None else sys.argv[1:])
    return 0


def write_docs(report: dict[str, object], argv: list[str]) -> None:
    """Replace the marked block of docs/analytics.md with this run's table, command, date and machine load."""
    text = DOCS.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS}: no {BEGIN} ... {END} block to rewrite")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    command = " ".join(["python scripts/eval_analytics.py", *map(shlex.quote, argv)])
    table = report["table"]
    met = report["targets_met"]
    assert isinstance(table, dict) and isinstance(met, dict)
    block = [BEGIN, "", f"`{command}` — {datetime.date.today().isoformat()}, {platform.machine()} with "
             f"{os.cpu_count()} CPUs, load average {load} (figures do not depend on speed):", "",
             *markdown_table(table), "",
             "Targets: " + "; ".join(f"{k}: {'met' if ok else '**missed**'}" for k, ok in met.items()) + ".", "", END]
    head, rest = text.split(BEGIN, 1)
    DOCS.write_text(head + "\n".join(block) + rest.split(END, 1)[1], encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())

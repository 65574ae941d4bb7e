"""Load run of the page: a real ``rtseg serve`` and parallel clients, valid and hostile, timed, with its memory.

See rtseg.offline.load_page for the mix of requests and what is measured; it prints p50/p95 latency per kind,
the unexpected answers and the server's peak resident memory (VmHWM), and fails (exit 1) on an unexpected answer
or when the server passed the memory cap.

    python scripts/load_page.py                          # 8 clients for 60 s, random weights, 128-pixel model
    python scripts/load_page.py --clients 16 --seconds 300 --json load.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtseg.offline.load_page import PageServer, run_load, summary_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-timeout", type=float, default=2.0, help="the server's --idle-timeout (default 2)")
    parser.add_argument("--memory-cap-mb", type=float, default=4096.0,
                        help="kill the server when its resident memory passes this (default 4096)")
    parser.add_argument("--serve-flags", default="--weights none --device cpu --size 128",
                        help="further flags of rtseg serve (default: random weights, CPU, a 128-pixel model)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    flags = [*args.serve_flags.split(), "--idle-timeout", str(args.idle_timeout)]
    server = PageServer(flags, args.memory_cap_mb).start()
    print(f"rtseg serve at {server.url} (pid {server.process.pid}); {args.clients} clients for {args.seconds:g} s",
          flush=True)
    try:
        report = run_load(server, args.clients, args.seconds, args.idle_timeout,
                          say=lambda line: print(line, flush=True))
    finally:
        server.stop()
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(summary_json(report) + "\n")
    return 0 if not report.unexpected and report.killed is None else 1


if __name__ == "__main__":
    sys.exit(main())

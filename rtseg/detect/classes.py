"""``rtseg classes``: the class names a model reports, the names ``--classes`` accepts.

Read from the weights' own metadata without building the model or downloading
anything, so it answers at once, offline too: torchvision's COCO weights and
random weights ('default', 'none') have COCO's 80 classes; a checkpoint from
``rtseg train`` has the classes it was trained on. torchvision's "N/A"
placeholders and the background are left out: no detection ever carries them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rtseg.core.commandline import WEIGHTS_HELP, ArgumentParser, run_command
from rtseg.detect.models import class_names_for, real_classes


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="rtseg classes",
        description="Print the class names a model reports (the names --classes takes), one per line.",
        epilog="examples:\n"
               "  rtseg classes                              COCO's 80 classes (--weights default or none)\n"
               "  rtseg classes --weights runs/mine/best.pt  the classes a checkpoint was trained on\n"
               "  rtseg classes --ids                        with the class ids of the --save-json records",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="default", help=WEIGHTS_HELP)
    parser.add_argument("--ids", action="store_true", help="prefix each name with its class id (class_id in "
                                                           "--save-json)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    names = class_names_for(args.weights)
    shown = set(real_classes(list(names)))
    lines = [f"{class_id} {name}" if args.ids else name for class_id, name in enumerate(names) if name in shown]
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `rtseg classes | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))

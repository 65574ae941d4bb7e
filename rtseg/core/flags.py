"""Command-line flags that rtseg, rtseg train and rtseg evaluate share, declared once.

Their choices come from the config's metadata, so every command accepts the
same values as the configuration file does.
"""

from __future__ import annotations

import argparse

from rtseg.core.config import ModelConfig, setting_choices

PRECISIONS: tuple[str, ...] = setting_choices(ModelConfig, "precision")


def add_device_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = "auto") -> None:
    """--device and --precision; ``default`` None leaves both to the configuration (the main command)."""
    parser.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", default=default, choices=PRECISIONS,
                        help="compute precision: auto = fp16 on CUDA, fp32 on the CPU; bf16 (inference only) is "
                             "faster on CPUs with AVX512-BF16 but changes masks slightly")

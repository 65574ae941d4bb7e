"""Where and in what precision the model runs: ``--device`` and ``--precision`` resolved once, with clear errors."""

from __future__ import annotations

import torch

from rtseg.core.errors import DeviceError


def resolve_device(spec: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' → a usable torch.device, or a clear DeviceError."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec} was asked for, but no CUDA GPU is available (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec} does not exist: {torch.cuda.device_count()} CUDA GPU(s) found")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r} (use auto, cpu, cuda or cuda:N)")
    return device


PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """The compute dtype of the network's convolutions and linear layers.

    'auto' is fp32 on the CPU: bf16 is faster there on CPUs with bf16
    instructions but changes results, so it is asked for, never assumed.
    """
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if spec == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    return PRECISION_DTYPES.get(spec, torch.float32)

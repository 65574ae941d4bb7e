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


NATIVE_BF16_FEATURES = ("amx_bf16", "avx512_bf16")  # x86 units oneDNN runs bf16 convolutions and matmuls on
# oneDNN's bf16 convolutions need one of these sets of instructions, native bf16 or not (emulated below AVX512).
BF16_CONVOLUTION_FEATURES = (("avx_ne_convert",), ("avx512_bw", "avx512_vl", "avx512_dq"))


def _onednn() -> bool:
    """Whether torch was built with oneDNN (mkldnn)."""
    available: bool = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    return available


def bf16_convolutions_supported() -> bool:
    """Whether this CPU's oneDNN runs the bf16 convolutions of the CPU's bf16 path at all (an AVX2-only
    CPU does not: ``mkldnn_convolution`` refuses them)."""
    if not _onednn():
        return False
    capabilities = torch.cpu.get_capabilities()
    return any(all(capabilities.get(name) for name in group) for group in BF16_CONVOLUTION_FEATURES)


def native_bf16_features() -> list[str]:
    """This CPU's bf16 instruction sets, as torch's cpuinfo reports them (none: bf16 is emulated, and slower)."""
    if not _onednn():  # oneDNN runs the bf16 convolutions; without it nothing pays
        return []
    capabilities = torch.cpu.get_capabilities()
    return [name for name in NATIVE_BF16_FEATURES if capabilities.get(name)]


def choose_precision(spec: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The compute dtype of the network's convolutions and linear layers, and one line saying why.

    'auto' is fp16 on CUDA, bf16 on a CPU with native bf16 (AMX or
    AVX512-BF16: about twice as fast as fp32 there, at the accuracy cost
    measured in docs/benchmarks.md), fp32 on other CPUs, where bf16 is emulated.
    """
    if spec == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    if spec == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    if spec != "auto":
        return PRECISION_DTYPES.get(spec, torch.float32), f"precision {spec} (as asked)"
    if device.type == "cuda":
        return torch.float16, "precision fp16 (auto on CUDA)"
    features = native_bf16_features()
    if features:
        shown = ", ".join(name.upper().replace("_", "-") for name in features)
        return torch.bfloat16, f"precision bf16 (auto: this CPU has native bf16, {shown}; --precision fp32 for exact results)"
    return torch.float32, "precision fp32 (auto: this CPU has no native bf16, AVX512-BF16 or AMX, so bf16 would be slower)"


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    """``choose_precision``'s dtype alone."""
    return choose_precision(spec, device)[0]

"""The network rebuilt for bf16 on the CPU: BatchNorm folded into convolutions, ReLU and residual adds fused in.

Eager bf16 runs every BatchNorm, ReLU and residual add as its own pass over
the activations, through ATen's bf16 elementwise kernels, which are slower
than its float32 ones; on a CPU whose convolutions run on AMX or AVX512-BF16
those passes are a large share of the frame (profile in docs/benchmarks.md).
Here each convolution is one oneDNN call
(``torch.ops.mkldnn._convolution_pointwise``, the op ``torch.compile`` emits
for the same pattern) with its BatchNorm folded into weights and bias (folded
in float32, then rounded to bf16 once) and its ReLU or residual add applied
before the result is rounded. Only the bf16 CPU path is rebuilt: float32 keeps
torchvision's modules and answers.
"""

from __future__ import annotations

from typing import TypeAlias, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork
from torchvision.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d

_pointwise = torch.ops.mkldnn._convolution_pointwise


Norm: TypeAlias = "nn.BatchNorm2d | FrozenBatchNorm2d"


def _folded(conv: nn.Conv2d, norm: Norm | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``norm(conv(x))`` as a single convolution, computed in float32."""
    weight = conv.weight.detach().to(torch.float32)
    bias = conv.bias.detach().to(torch.float32) if conv.bias is not None else torch.zeros(len(weight))
    if norm is None:
        return weight, bias
    # BatchNorm2d keeps weight and bias as parameters, FrozenBatchNorm2d as buffers: read both kinds.
    values = {**dict(norm.named_parameters()), **dict(norm.named_buffers())}
    scale = values["weight"].detach().float() * (values["running_var"].detach().float() + norm.eps).rsqrt()
    shift = values["bias"].detach().float() - values["running_mean"].detach().float() * scale
    return weight * scale[:, None, None, None], bias * scale + shift


class FusedConv(nn.Module):
    """``relu?(norm?(conv(x)) (+ other))`` in one oneDNN call, in ``dtype``."""

    def __init__(self, conv: nn.Conv2d, norm: Norm | None, relu: bool, dtype: torch.dtype) -> None:
        super().__init__()
        weight, bias = _folded(conv, norm)
        self.weight = nn.Parameter(weight.to(dtype).contiguous(memory_format=torch.channels_last),
                                   requires_grad=False)
        self.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.relu = relu

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(self.weight.dtype)
        unary = "relu" if self.relu else "none"
        if other is None:
            out: torch.Tensor = _pointwise(x, self.weight, self.bias, *self.geometry, unary, [], "")
        else:
            out = _pointwise.binary(x, other.to(x.dtype), self.weight, self.bias, *self.geometry, "add", 1.0,
                                    unary if self.relu else None, [], "")
        return out


def _is_norm(module: nn.Module) -> TypeGuard[Norm]:
    return isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d))


def _fusable(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
    return (isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


class _FusedBottleneck(nn.Module):
    def __init__(self, block: Bottleneck, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv1 = FusedConv(block.conv1, block.bn1, True, dtype)
        self.conv2 = FusedConv(block.conv2, block.bn2, True, dtype)
        self.conv3 = FusedConv(block.conv3, block.bn3, True, dtype)
        self.downsample = _fused_downsample(block.downsample, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.conv3(self.conv2(self.conv1(x)), identity)
        return out


class _FusedBasicBlock(nn.Module):
    def __init__(self, block: BasicBlock, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv1 = FusedConv(block.conv1, block.bn1, True, dtype)
        self.conv2 = FusedConv(block.conv2, block.bn2, True, dtype)
        self.downsample = _fused_downsample(block.downsample, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out: torch.Tensor = self.conv2(self.conv1(x), identity)
        return out


def _fused_downsample(downsample: nn.Module | None, dtype: torch.dtype) -> FusedConv | None:
    if downsample is None:
        return None
    conv, norm = list(downsample.children())  # torchvision's ResNet: Sequential(conv1x1, norm)
    if not (_fusable(conv) and _is_norm(norm)):
        raise TypeError(f"unexpected ResNet downsample {downsample}")
    return FusedConv(conv, norm, False, dtype)


def _fused_sequence(block: nn.Sequential, dtype: torch.dtype) -> FusedConv | None:
    """A Conv2dNormActivation (conv, optional norm, optional ReLU) as one FusedConv, or None if it is another kind."""
    layers = list(block)
    conv = layers[0] if layers else None
    if conv is None or not _fusable(conv):
        return None
    second = layers[1] if len(layers) > 1 else None
    norm = second if second is not None and _is_norm(second) else None
    rest = layers[2 if norm is not None else 1:]
    if len(rest) > 1 or (rest and not isinstance(rest[0], nn.ReLU)):
        return None
    return FusedConv(conv, norm, bool(rest), dtype)


class _FusedFPN(nn.Module):
    """torchvision's FeaturePyramidNetwork with each lateral convolution and its top-down add as one call."""

    def __init__(self, fpn: FeaturePyramidNetwork, inner: list[FusedConv]) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(inner)
        self.layer_blocks = fpn.layer_blocks
        self.extra_blocks = fpn.extra_blocks

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names, maps = list(x.keys()), list(x.values())
        last_inner = self.inner_blocks[-1](maps[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(maps) - 2, -1, -1):
            top_down = F.interpolate(last_inner, size=maps[idx].shape[-2:], mode="nearest")
            last_inner = self.inner_blocks[idx](maps[idx], top_down)
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, maps, names)
        return dict(zip(names, results))


def _fuse_children(module: nn.Module, dtype: torch.dtype) -> None:
    for name, child in module.named_children():
        replacement: nn.Module | None = None
        if isinstance(child, Bottleneck):
            replacement = _FusedBottleneck(child, dtype)
        elif isinstance(child, BasicBlock):
            replacement = _FusedBasicBlock(child, dtype)
        elif isinstance(child, Conv2dNormActivation):
            replacement = _fused_sequence(child, dtype)
        if replacement is not None:
            setattr(module, name, replacement)
            continue
        _fuse_children(child, dtype)
        if isinstance(child, FeaturePyramidNetwork):
            inner = [_fused_sequence(block, dtype) if isinstance(block, nn.Sequential) else block
                     for block in child.inner_blocks]
            fused = [block for block in inner if isinstance(block, FusedConv) and not block.relu]
            if len(fused) == len(inner):
                setattr(module, name, _FusedFPN(child, fused))


def fuse_for_cpu(model: nn.Module, dtype: torch.dtype) -> None:
    """Rebuild ``model`` in place for ``dtype`` inference on the CPU (see the module docstring).

    The ResNet stem (conv1, bn1, relu as siblings) becomes one call; every
    ResNet block, Conv2dNormActivation and FPN lateral becomes fused calls;
    any convolution or linear layer left over keeps its module with weights
    stored in ``dtype``.
    """
    try:
        body = model.get_submodule("backbone.body")
        conv, norm, relu = (body.get_submodule(name) for name in ("conv1", "bn1", "relu"))
    except AttributeError:  # not a torchvision ResNet backbone: its blocks are still fused below
        body = None
    if body is not None and _fusable(conv) and _is_norm(norm) and isinstance(relu, nn.ReLU):
        body.conv1 = FusedConv(conv, norm, True, dtype)
        body.bn1, body.relu = nn.Identity(), nn.Identity()
    _fuse_children(model, dtype)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.to(dtype)

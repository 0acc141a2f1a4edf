"""Per-layer encoder branches of the fusion network and the small blocks they are made of.

A branch takes one layer at its native resolution and returns (features at the fusion stride,
thin native-resolution features for the decoder's skip connection). Pure torch.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LightBranch", "ResBlock", "ResNetBranch", "conv_bn_relu", "resize"]


def conv_bn_relu(cin: int, cout: int, *, stride: int = 1, dilation: int = 1, k: int = 3
                 ) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU (padding keeps size / stride)."""
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Two 3x3 convolutions (optionally dilated) with an identity shortcut."""

    def __init__(self, ch: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(ch, ch, dilation=dilation),
                                  nn.Conv2d(ch, ch, 3, 1, dilation, dilation, bias=False),
                                  nn.BatchNorm2d(ch))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


def _prime_strides(n: int) -> list[int]:
    """Factor a total stride into prime steps (6 -> [2, 3])."""
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bring a feature map to ``size``: area-average when shrinking, bilinear when growing."""
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LightBranch(nn.Module):
    """Small CNN: two thin convs at native resolution, strided convs to ``stride``, a res block.

    The native-resolution part has ``width // 2`` channels: at 10 m it is the costliest place
    per parameter, and its output also serves as the decoder's skip connection.
    """

    def __init__(self, in_chans: int, width: int, stride: int) -> None:
        super().__init__()
        half = max(1, width // 2)
        self.stem = nn.Sequential(conv_bn_relu(in_chans, half), conv_bn_relu(half, half))
        steps = _prime_strides(stride) or [1]
        self.down = nn.Sequential(*[conv_bn_relu(half if i == 0 else width, width, stride=s)
                                    for i, s in enumerate(steps)])
        self.block = ResBlock(width)
        self.skip_channels = half

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (features at ``stride``, thin features at native resolution)."""
        skip = self.stem(x)
        return self.block(self.down(skip)), skip


class ResNetBranch(nn.Module):
    """timm ResNet stem + stages 1-2 with strides set so the output lands at ``stride``.

    Stages 3-4 are dropped: kept at stride <= 8 (instead of 32) they would dominate the CPU
    cost, and the fusion trunk's context stage provides context. Parameter names stay timm's
    (``backbone.conv1.weight``...), so torchgeo/timm ResNet weights load by name.
    """

    def __init__(self, name: str, in_chans: int, width: int, stride: int) -> None:
        super().__init__()
        import timm

        net: Any = timm.create_model(name, pretrained=False, in_chans=in_chans)
        pow2 = stride & -stride  # the power-of-two part; the rest is resampled
        conv1 = next(m for m in net.conv1.modules() if isinstance(m, nn.Conv2d))
        conv1.stride = (2, 2) if pow2 >= 2 else (1, 1)
        if pow2 < 4:
            net.maxpool = nn.Identity()
        if pow2 < 8:
            for m in net.layer2[0].modules():
                if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                    m.stride = (1, 1)
        net.layer3, net.layer4, net.fc = nn.Identity(), nn.Identity(), nn.Identity()
        chans = {info["module"]: info["num_chs"] for info in net.feature_info}
        self.backbone = net
        self.proj = conv_bn_relu(chans["layer2"], width, k=1)
        self.skip_channels = max(1, width // 2)
        self.skip = conv_bn_relu(chans["act1"], self.skip_channels, k=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (features at ``stride``, stem features)."""
        b = self.backbone
        stem = b.act1(b.bn1(b.conv1(x)))
        feat = b.layer2(b.layer1(b.maxpool(stem)))
        return self.proj(feat), self.skip(stem)

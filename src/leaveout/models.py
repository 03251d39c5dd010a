"""Networks, created by name from a registry (timm style).

Every model takes `num_classes` and `in_channels`, maps (B, C, H, W) float to logits
(B, num_classes), and exposes `forward_features` (B, D) (the penultimate layer) and `classifier`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, ShapeError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def check_model(name: str, **kwargs: Any) -> None:
    """Refuse an unknown network, or a setting (e.g. dropout) that the network does not take."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    takes = set(inspect.signature(_REGISTRY[name]).parameters) - {"num_classes", "in_channels"}
    for key in kwargs:
        if key not in takes:
            raise ConfigError(
                f"model {name!r} has no setting {key!r}"
                + (f"; it takes {', '.join(sorted(takes))}" if takes else "")
            )


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """A fresh network `name` with `num_classes` outputs (initialised from torch's global RNG)."""
    check_model(name, **kwargs)
    return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _Classifier(nn.Module):
    """Base: logits = classifier(forward_features(x))."""

    classifier: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


# --- DenseNet-BC (Huang et al. 2017) ---------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = (
            nn.BatchNorm2d(channels),
            nn.Conv2d(channels, 4 * growth, 1, bias=False),
        )
        self.norm2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], dim=1)


class _Transition(nn.Sequential):
    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNetBC(_Classifier):
    """DenseNet-BC for 32x32 inputs: 3 dense blocks of bottleneck layers, compression 0.5."""

    def __init__(self, depth: int, growth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"DenseNet-BC depth must be 6n+4, got {depth}")
        per_block = (depth - 4) // 6
        channels = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(per_block):
                layers.append(_DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                layers.append(_Transition(channels, channels // 2))
                channels //= 2
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


@register_model("densenet_bc_100")
def densenet_bc_100(num_classes: int, in_channels: int = 3) -> nn.Module:
    """DenseNet-BC, L=100, k=12, no dropout (about 0.8M parameters)."""
    return DenseNetBC(100, 12, num_classes, in_channels)


# --- Wide ResNet (Zagoruyko and Komodakis 2016) -----------------------------------------------------


class _WideBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = (
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
        )
        self.norm2, self.conv2 = (
            nn.BatchNorm2d(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
        )
        self.dropout = nn.Dropout(dropout)
        self.shortcut = (
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)
            if in_ch != out_ch or stride != 1
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.norm1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.norm2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(_Classifier):
    """WRN-depth-widen for 32x32 inputs; dropout between the convolutions of each block."""

    def __init__(
        self, depth: int, widen: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ConfigError(f"Wide ResNet depth must be 6n+4, got {depth}")
        per_group = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        for group in range(3):
            for i in range(per_group):
                stride = 2 if group > 0 and i == 0 else 1
                in_ch = widths[group] if i == 0 else widths[group + 1]
                layers.append(_WideBlock(in_ch, widths[group + 1], stride, dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[3], num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


@register_model("wrn_28_10")
def wrn_28_10(num_classes: int, in_channels: int = 3, dropout: float = 0.3) -> nn.Module:
    """Wide ResNet 28-10 (widths 160/320/640), dropout 0.3 (about 36.5M parameters)."""
    return WideResNet(28, 10, num_classes, in_channels, dropout)


# --- CIFAR ResNet (He et al. 2016, option A shortcuts) ------------------------------------------------


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = (
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.conv2, self.norm2 = (
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )
        self.stride, self.extra = stride, out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.extra:  # parameter-free: subsample and zero-pad channels
            shortcut = x[:, :, :: self.stride, :: self.stride]
            half = self.extra // 2
            shortcut = F.pad(shortcut, (0, 0, 0, 0, half, self.extra - half))
        return F.relu(out + shortcut)


class CifarResNet(_Classifier):
    """ResNet-(6n+2) for 32x32 inputs with base width `width` (16 in the paper)."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        per_stage = (depth - 2) // 6
        widths = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        in_ch = width
        for stage, out_ch in enumerate(widths):
            for i in range(per_stage):
                layers.append(_BasicBlock(in_ch, out_ch, 2 if stage > 0 and i == 0 else 1))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


@register_model("resnet20")
def resnet20(num_classes: int, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-20, widths 16/32/64 (about 0.27M parameters)."""
    return CifarResNet(20, num_classes, in_channels)


@register_model("resnet8")
def resnet8(num_classes: int, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-8, widths 16/32/64: one block per stage, fit for two CPU cores."""
    return CifarResNet(8, num_classes, in_channels)


@register_model("resnet14_w32")
def resnet14_w32(num_classes: int, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-14 with widths 32/64/128: a wider, shallower CPU network."""
    return CifarResNet(14, num_classes, in_channels, width=32)


# --- airbench-style network (after KellerJordan/cifar10-airbench) ------------------------------------


class GELU(nn.GELU):
    """nn.GELU that runs on a channels_last tensor's memory as one flat contiguous block: torch's
    GELU kernels are about 1.5x slower on the channels_last layout itself (docs/benchmarks.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


class _ConvGroup(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(out_ch),
            GELU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            GELU(),
        )


class AirNet(_Classifier):
    """A frozen 2x2 patch-whitening convolution, three conv-maxpool-BatchNorm-GELU groups, global
    max pooling and a bias-free linear layer on the pooled features scaled by 1/9.

    The whitening filters are set from the training images by `init_from_data` (training calls it
    once, before the first step); they are saved with the weights like any other parameter. With
    `whitened=False` the same first convolution starts at random and learns (an ablation).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (64, 128, 128),
        whitened: bool = True,
    ) -> None:
        super().__init__()
        patch = in_channels * 4
        self.whitened = whitened
        self.whiten = nn.Conv2d(in_channels, 2 * patch, 2, bias=True)
        self.whiten.weight.requires_grad_(not whitened)
        self.features = nn.Sequential(
            GELU(),
            _ConvGroup(2 * patch, widths[0]),
            _ConvGroup(widths[0], widths[1]),
            _ConvGroup(widths[1], widths[2]),
        )
        self.classifier = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Whitening filters from normalised images x (B, C, H, W): the eigenvectors of the 2x2
        patch covariance divided by the square roots of their eigenvalues, and their negatives."""
        if not self.whitened:
            return
        patches = F.unfold(x.float(), 2).transpose(1, 2).reshape(-1, self.whiten.in_channels * 4)
        patches = patches.double() - patches.double().mean(0)
        values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        filters = (vectors / (values + eps).sqrt()).T.reshape(-1, self.whiten.in_channels, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

    def train_whitening_bias(self, on: bool) -> None:
        """Let the whitening bias learn, or freeze it. Frozen, a training step skips the input
        gradient of the first convolution, the largest layer (about a tenth of a CPU step)."""
        if not self.whitened:
            raise ConfigError("this airnet learns its first convolution: no whitening to freeze")
        self.whiten.bias.requires_grad_(on)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_max_pool2d(self.features(self.whiten(x)), 1).flatten(1)
        return pooled / 9  # airbench's scaled head, folded into the features (bias-free layer)


@register_model("airnet")
def airnet(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Airbench-style network, widths 64/128/128 (about 0.6M parameters)."""
    return AirNet(num_classes, in_channels)


@register_model("airnet_small")
def airnet_small(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Airbench-style network, widths 32/64/64 (about 0.15M parameters)."""
    return AirNet(num_classes, in_channels, (32, 64, 64))


@register_model("airnet_learned_stem")
def airnet_learned_stem(num_classes: int, in_channels: int = 3) -> nn.Module:
    """airnet whose first convolution learns from a random start instead of whitening (ablation)."""
    return AirNet(num_classes, in_channels, whitened=False)


# --- toy networks -----------------------------------------------------------------------------------


class TutorialCNN(_Classifier):
    """The PyTorch CIFAR-10 tutorial network (LeNet-like), which earlier implementations used."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(in_channels, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84)
        self.classifier = nn.Linear(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (32, 32):
            raise ConfigError(f"tutorial_cnn takes 32x32 inputs, got {tuple(x.shape[-2:])}")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


@register_model("tutorial_cnn")
def tutorial_cnn(num_classes: int, in_channels: int = 3) -> nn.Module:
    """conv(6,5)-pool-conv(16,5)-pool-fc120-fc84-fc (about 62k parameters for 10 classes)."""
    return TutorialCNN(num_classes, in_channels)


class DigitsNet(_Classifier):
    """A tiny conv net for the 16x16 digits demo: three 3x3 convs with BatchNorm, then pooling."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(in_channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2),
        )
        self.classifier = nn.Linear(4 * width, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


@register_model("digits_cnn")
def digits_cnn(num_classes: int, in_channels: int = 3) -> nn.Module:
    """Three conv layers (16/32/64 channels), for the digits demo (about 24k parameters)."""
    return DigitsNet(num_classes, in_channels)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` for inference with each BatchNorm2d merged into the convolution before
    it, in eval mode with frozen weights: the same function up to float rounding, fewer passes
    over memory (the BatchNorm layers are 5-9% of airnet's scoring time, docs/benchmarks.md).
    A model with nothing to fold is returned itself, not copied (no second set of weights).

    Folded where a Sequential holds Conv2d -> BatchNorm2d, or Conv2d -> MaxPool2d -> BatchNorm2d
    when every channel's scale is positive (max pooling commutes with an increasing affine map
    only). Other BatchNorm layers stay as they are.
    """
    if not foldable_layers(model):
        return model
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for sequence, i, conv in foldable_layers(folded):
        merge_batchnorm(conv, sequence[i])
        sequence[i] = nn.Identity()
    return folded


def foldable_layers(model: nn.Module) -> list[tuple[nn.Sequential, int, nn.Conv2d]]:
    """(Sequential, index of a BatchNorm2d in it, the convolution it can be merged into)."""
    found = []
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = list(sequence)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm2d) and layer.track_running_stats:
                conv = foldable_conv(layers[:i], layer)
                if conv is not None:
                    found.append((sequence, i, conv))
    return found


def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm2d: y = x * scale + shift."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def foldable_conv(before: list[nn.Module], bn: nn.BatchNorm2d) -> nn.Conv2d | None:
    """The convolution that `bn` (preceded by the layers `before`) can be merged into, if any."""
    if (
        before
        and isinstance(before[-1], nn.MaxPool2d)
        and bool((batchnorm_affine(bn)[0] > 0).all())
    ):
        before = before[:-1]
    if before and isinstance(before[-1], nn.Conv2d) and before[-1].out_channels == bn.num_features:
        return before[-1]
    return None


@torch.no_grad()
def merge_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv's weights and bias become those of bn(conv(x)) (computed in float64)."""
    scale, shift = batchnorm_affine(bn)
    weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight.copy_(weight.to(conv.weight))
    conv.bias = nn.Parameter(bias.to(conv.weight), requires_grad=False)


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: object) -> None:
    """Copy weights into `model`; a missing, extra or mis-shaped tensor is an error naming `source`."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = [
        f"missing {missing[:3]}" if missing else "",
        f"unexpected {extra[:3]}" if extra else "",
        f"shape {wrong[:3]}" if wrong else "",
    ]
    if any(problems):
        raise ShapeError(
            f"{source} does not fit the network {type(model).__name__}: "
            + "; ".join(p for p in problems if p)
        )
    model.load_state_dict(tensors)

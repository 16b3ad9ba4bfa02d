"""PilotNet-style steering CNN (Bojarski et al. 2016): 5 conv + 4 linear layers, configurable."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

# (out channels, kernel, stride) of PilotNet's five convolutions
_CONVS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))
_HIDDEN = (100, 50, 10)
ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU}  # ReLU lets onnxruntime fuse it into the convolution


@dataclass(frozen=True)
class PilotNetConfig:
    """``width_mult``: channel multiplier; ``conv_layers`` (1-5) / ``linear_layers`` (1-4): depth;
    ``activation``: after every layer but the last (``ACTIVATIONS``).

    The default is PilotNet exactly: conv 24/36/48 5x5 s2, 64/64 3x3, linear 100/50/10/1, ELU.
    """

    width_mult: float = 1.0  # channel multiplier of every layer (1: the paper's widths)
    conv_layers: int = 5
    linear_layers: int = 4
    input_height: int = 66
    input_width: int = 200
    activation: str = "elu"

    def to_dict(self) -> dict:
        return asdict(self)


class PilotNet(nn.Module):
    """Steering from a preprocessed frame.

    Shapes: input (N, 3, H, W) float32 RGB in [-1, 1] (``metasteer.preprocess``); output (N,) steer
    in [-1, 1] (CARLA convention, +1 = full right) through a final tanh. ``forward`` is exactly
    ``head(features(x))``, the split the head-only meta-gradient relies on.
    """

    def __init__(self, config: PilotNetConfig = PilotNetConfig()) -> None:
        super().__init__()
        if not (1 <= config.conv_layers <= len(_CONVS) and 1 <= config.linear_layers <= len(_HIDDEN) + 1):
            raise ValueError(f"conv_layers must be 1-5 and linear_layers 1-4, got {config}")
        if config.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {config.activation!r}")
        act = ACTIVATIONS[config.activation]
        self.config = config
        layers: list[nn.Module] = []
        channels = 3
        for out, kernel, stride in _CONVS[: config.conv_layers]:
            out = max(4, int(round(out * config.width_mult)))
            layers += [nn.Conv2d(channels, out, kernel, stride), act()]
            channels = out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, config.input_height, config.input_width)).numel()
        sizes = [flat] + [max(4, int(round(h * config.width_mult))) for h in _HIDDEN[: config.linear_layers - 1]] + [1]
        head: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            head.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                head.append(act())
        head += [nn.Tanh(), nn.Flatten(0)]
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        c = self.config
        return f"width_mult={c.width_mult}, conv_layers={c.conv_layers}, linear_layers={c.linear_layers}, activation={c.activation}"


def penultimate_width(config: PilotNetConfig) -> int:
    """Width of the features the last linear layer reads (what a loss reading the model's features gets)."""
    with torch.random.fork_rng(devices=[]):  # building the probe must not move the caller's seeded draws
        return [m for m in PilotNet(config).head if isinstance(m, nn.Linear)][-1].in_features

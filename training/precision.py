"""What a training step's forward pass computes in: float32, or bfloat16 autocast on channels-last tensors (a
PilotNet step 2.5x cheaper on a CPU with AVX-512 BF16, ``metasteer bench train-step``). Weights, the optimiser,
the loss, validation and every meta step stay float32: a model file is the same kind either way (its run's
``request.json`` records which). Under bf16 the prediction the loss sees is rounded to bfloat16 (~0.002 at a steer of
0.5): the price of running the whole forward pass, head included, in the precision that was judged in closed loop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    name: str
    device: str

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision {self.name!r}: choose one of {PRECISIONS}")
        if self.reduced and torch.device(self.device).type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            warnings.warn("this CPU has no native bfloat16: --precision bf16 will be emulated, likely slower than fp32", stacklevel=2)

    @property
    def reduced(self) -> bool:
        return self.name == "bf16"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` laid out for this precision's convolutions (channels-last is what oneDNN's bf16 kernels want)."""
        return model.to(memory_format=torch.channels_last) if self.reduced else model

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` in this precision, returned as float32 for the loss."""
        if not self.reduced:
            return model(x)
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

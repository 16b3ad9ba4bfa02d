"""``metasteer bench train-step``: where a training step's time goes, on CPU and (if present) CUDA.

``compute_ms``: forward + backward + clipped Adam step on a batch already on the device.
``data_ms``: drawing a batch as ``metasteer train`` does (sampler -> uint8 frames gathered from
RAM or GPU memory -> preprocessing on the device). ``step_ms``: both together. ``data_share`` =
data / step. ``cpu_bf16_channels_last``: the same step under bfloat16 autocast with channels-last tensors, what
``train --precision bf16`` runs (judged in closed loop by ``bench architecture --archs 1.0:elu,1.0:elu:bf16``). Medians
over interleaved repeats.
Frames are random uint8 bands of the training size (the input path's cost does not depend on their content).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training.data.arrays import ArraySet, Sampler
from training.models import PilotNet, PilotNetConfig
from training.precision import Precision


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_device(data: ArraySet, device: str, batch: int, repeats: int, seed: int, precision: str = "fp32") -> dict:
    torch.manual_seed(seed)
    step = Precision(precision, device)  # the training run's own forward pass
    model = step.prepare(PilotNet(PilotNetConfig()).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sampler = Sampler(data.abnormal, batch, seed)

    def train_on(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.mean((step.forward(model, x) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    fixed_x, fixed_y, _ = data.batch(sampler.next(), device)
    parts = {"compute": lambda: train_on(fixed_x, fixed_y), "data": lambda: data.batch(sampler.next(), device),
             "step": lambda: train_on(*data.batch(sampler.next(), device)[:2])}
    times: dict[str, list[float]] = {k: [] for k in parts}
    for r in range(repeats + 2):  # interleaved, so load on the machine hits all three alike; 2 warm-ups
        for name, fn in parts.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if r >= 2:
                times[name].append(1000.0 * (time.perf_counter() - start))
    ms = {k: float(np.median(v)) for k, v in times.items()}
    return {"compute_ms": ms["compute"], "data_ms": ms["data"], "step_ms": ms["step"], "data_share": ms["data"] / ms["step"],
            "batch": batch, "threads": torch.get_num_threads()}


def bench_train_step(frames: int = 8000, batch: int = 64, repeats: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_abnormal = frames // 20
    category = np.array(["normal"] * (frames - n_abnormal) + ["pedestrian"] * n_abnormal)
    data = ArraySet(rng.integers(0, 256, (frames, 66, 200, 3), dtype=np.uint8), rng.normal(0, 0.05, frames).astype(np.float32),
                    np.zeros((frames, 12), np.float32), category, [f"f{k}" for k in range(12)], np.arange(frames) // 100)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {"frames": frames, **{d: bench_device(data, d, batch, repeats, seed) for d in devices},
            "cpu_bf16_channels_last": bench_device(data, "cpu", batch, repeats, seed, precision="bf16")}

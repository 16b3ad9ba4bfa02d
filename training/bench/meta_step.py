"""``metasteer bench meta-step``: seconds per plain step and per meta step (each engine, 1 and 5
inner steps, full and head-only meta-gradient), their ratios, and how well the head-only
meta-gradient agrees with the full one (cosine, over the batches where phi has a gradient at all).

A meta step here is a whole training step: meta-gradient, phi update, and the model taking the
inner step (``model_update="inner"``), so it is compared with one plain step like for like.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training.losses import LossSpec, make_loss
from training.meta import ENGINES, MetaConfig, MetaTrainer, meta_gradient_head
from training.meta.lookahead import SGD
from training.meta.trainer import emphasised_mse
from training.models import PilotNet


def _frames(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """n real frames of the embedded world (expert-driven, rare scenes on), preprocessed."""
    from metasteer.preprocess import to_tensor
    from simulator.base import SceneFeatures
    from simulator.embedded import embedded_world
    from simulator.encounters import RARE_CATEGORIES
    from training.data.arrays import CATEGORY_FEATURES

    world = embedded_world(0.3)
    obs, frames, ys, feats = world.reset(seed), [], [], []
    while len(frames) < n:
        obs = world.step(obs.expert_control)
        if obs.done:
            obs = world.reset(seed + len(frames) + 1)
        if len(frames) < n and world.time_s % 0.5 < 0.05:
            frames.append(obs.image[:, :, :3])
            ys.append(obs.expert_control.steer)
            onehot = [float(obs.category == c) for c in RARE_CATEGORIES]  # as the training arrays append them
            feats.append(np.concatenate([obs.features.as_array(), onehot]).astype(np.float32))
    x = torch.from_numpy(to_tensor(np.stack(frames)))
    return x, torch.tensor(ys, dtype=torch.float32), torch.from_numpy(np.stack(feats)), list(SceneFeatures.names()) + list(CATEGORY_FEATURES)


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench_meta_step(batch: int = 32, repeats: int = 5, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    x, y, extra, names = _frames(12 * batch, seed)
    batches = [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch], extra[i * batch:(i + 1) * batch]) for i in range(12)]
    loss = make_loss(LossSpec(loss="weighted"), names, y.numpy(), extra.numpy())
    torch.nn.init.normal_(loss.score[-1].weight, std=0.3)  # a loss that is not yet uniform
    task = emphasised_mse(names.index("abnormal"), 1.0)

    model = PilotNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def plain() -> None:
        xb, yb, eb = batches[0]
        value = loss(model(xb), yb, eb)
        opt.zero_grad()
        value.backward()
        opt.step()

    out: dict = {"batch": batch, "threads": torch.get_num_threads(), "plain_step_s": _time(plain, repeats), "meta_step_s": {}}
    for engine in ENGINES:
        for unroll in (1, 5):
            trainer = MetaTrainer(lambda s: PilotNet(), loss, task, MetaConfig(engine=engine, unroll=unroll, reset_every=0, model_update="inner"), seed)
            out["meta_step_s"][f"{engine}_k{unroll}"] = _time(lambda: trainer.step(batches[1:1 + unroll], batches[-1]), max(2, repeats // unroll))
    cheap = MetaTrainer(lambda s: PilotNet(), loss, task, MetaConfig(head_only=True, reset_every=0, model_update="inner"), seed)
    out["meta_step_s"]["head_only_k1"] = _time(lambda: cheap.step(batches[1:2], batches[-1]), repeats)

    cosines = []
    for i in range(1, 6):
        full = ENGINES["func"](model, loss, task, [batches[i]], batches[-1], SGD(0.05))
        head = meta_gradient_head(model, loss, task, [batches[i]], batches[-1], SGD(0.05))
        a, b = (torch.cat([g.flatten() for g in r.phi_grads]) for r in (full, head))
        if float(a.norm()) > 1e-8:  # an all-normal batch gives phi no gradient (~1e-11): no direction to compare
            cosines.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    best_full = min(v for k, v in out["meta_step_s"].items() if k.endswith("_k1") and not k.startswith("head"))
    out["overhead_ratio"] = best_full / out["plain_step_s"]
    out["cheap_overhead_ratio"] = out["meta_step_s"]["head_only_k1"] / out["plain_step_s"]
    out["cheap_grad_cosine"] = float(np.mean(cosines)) if cosines else None
    out["cheap_grad_cosine_min"] = float(np.min(cosines)) if cosines else None
    out["cheap_grad_batches"] = len(cosines)
    return out

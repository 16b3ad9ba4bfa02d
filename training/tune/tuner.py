"""The tuning loop: fixed points first (e.g. MSE itself), then Sobol points, then BoTorch batches of
``parallel`` trials; a batch the initial design leaves part-empty is filled by BoTorch (the design's points
pending), so no worker idles through it. Only the first batch, before any result, can run fewer (``init`` below
``parallel``), or a batch a kill cut short between its proposals.

Every proposal and every finished trial is appended to ``trials.jsonl`` (flushed per line). A
restarted tuner reads it back, runs the proposals that have no result yet and proposes nothing it
already ran: finished trials are never re-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from training.files import atomic_write_json, holds_json
from training.tune.bo import sobol_points, suggest
from training.tune.space import FIRST_POINTS, LEARNED_SPACE, SPACES, decode
from training.workers import executor

Objective = Callable[[np.ndarray, int], tuple[float, float]]  # (x in [0,1]^d, trial) -> (mean, var of mean)


@dataclass(frozen=True)
class TuneConfig:
    budget: int = field(default=12, metadata={"range": (1, None), "help": "trials in all"})
    init: int = field(default=4, metadata={"range": (1, None), "help": "fixed and Sobol trials before BO"})
    parallel: int = field(default=1, metadata={"range": (1, None), "help": "trials run at once (q of qLogNEI)"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of Sobol points, BO restarts and trials"})
    method: str = field(default="bo", metadata={"help": "bo, or sobol only", "choices": ("bo", "sobol")})
    executor: str = field(default="local", metadata={"help": "where trials run", "choices": ("local", "ray")})
    address: str = field(default="", metadata={"help": "Ray cluster address (--executor ray); empty: $RAY_ADDRESS if set, else a new local Ray instance"})


def _worker() -> str:
    """Where a trial ran: ``ray:<worker id>`` inside a Ray worker, else ``pid:<process id>``."""
    ray = sys.modules.get("ray")  # never imported just to ask
    if ray is not None and ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
        return f"ray:{ray.get_runtime_context().get_worker_id()}"
    return f"pid:{os.getpid()}"


def _call(objective: Objective, x: list[float], trial: int) -> tuple[int, float, float, float, str]:
    start = time.perf_counter()
    y, yvar = objective(np.asarray(x), trial)
    return trial, float(y), float(yvar), time.perf_counter() - start, _worker()


class _Local:
    def __init__(self, workers: int) -> None:
        self.pool = executor(workers)

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def as_completed(self, futures):
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class _Ray:
    """Trials as Ray tasks, for users whose trials need many CARLA servers across machines."""

    def __init__(self, address: str) -> None:
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))}})
        self.remote = ray.remote(num_cpus=1)(_call)

    def submit(self, fn, *args):
        return self.remote.remote(*args)

    def as_completed(self, futures):
        pending = list(futures)
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1)
            yield self.ray.get(done[0])

    def close(self) -> None:
        pass


def read_trials(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """A trial log (``trials.jsonl``) -> (proposed, finished) records by trial number."""
    proposed, finished = {}, {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: its trial is simply run again
            (proposed if r["event"] == "proposed" else finished)[r["trial"]] = r
    return proposed, finished


class Tuner:
    """One search (BO or Sobol) in ``out``: proposes points of ``space`` (the unit cube, decoded by
    ``tune.space``), the ``first`` points before any other, runs ``objective`` on them ``cfg.parallel``
    at a time on the local or Ray executor, and appends every proposal and result to
    ``out/trials.jsonl`` as it happens; a restarted Tuner reads that log back and runs only the
    proposals without a result."""

    def __init__(self, out: Path, cfg: TuneConfig, objective: Objective, space=LEARNED_SPACE, first: list[list[float]] = ()) -> None:
        self.out, self.cfg, self.objective, self.space, self.first = Path(out), cfg, objective, space, [list(map(float, p)) for p in first]
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / "trials.jsonl"

    # ---- the log ----------------------------------------------------------------------------------

    def records(self) -> tuple[dict[int, dict], dict[int, dict]]:
        return read_trials(self.log_path)

    def _append(self, record: dict) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ---- proposals ---------------------------------------------------------------------------------

    def _propose(self, proposed: dict, finished: dict) -> list[dict]:
        cfg, d = self.cfg, len(self.space)
        start = len(proposed)
        n = min(cfg.parallel, cfg.budget - start)
        points = [(x, "fixed") for x in self.first[start:start + n]]
        at, k = start + len(points), n - len(points)
        if k and (cfg.method == "sobol" or at < cfg.init):
            k = k if cfg.method == "sobol" else min(k, cfg.init - at)
            points += [(x, "sobol") for x in sobol_points(k, d, cfg.seed, skip=at).tolist()]
        if len(points) < n and finished:  # the model fills the batch, its other points pending: no worker waits idle for the batch
            x, y, yvar = self.data(finished)
            pending = torch.tensor([p for p, _ in points], dtype=torch.float64) if points else None
            points += [(p, "bo") for p in suggest(x, y, yvar, q=n - len(points), seed=cfg.seed * 1000 + start, pending=pending)[0].tolist()]
        batch = []
        for i, (x, method) in enumerate(points):
            record = {"event": "proposed", "trial": start + i, "method": method, "x": x, "params": decode(np.array(x), self.space)}
            self._append(record)
            batch.append(record)
        return batch

    @staticmethod
    def data(finished: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [finished[k] for k in sorted(finished)]
        x = torch.tensor([r["x"] for r in rows], dtype=torch.float64)
        y = torch.tensor([[r["y"]] for r in rows], dtype=torch.float64)
        yvar = torch.tensor([[r["yvar"]] for r in rows], dtype=torch.float64)
        return x, y, yvar

    # ---- the loop -----------------------------------------------------------------------------------

    def run(self, progress: bool = True) -> dict:
        from tqdm import tqdm

        proposed, finished = self.records()
        executor = _Ray(self.cfg.address) if self.cfg.executor == "ray" else _Local(self.cfg.parallel)
        bar = tqdm(total=self.cfg.budget, initial=len(finished), desc=f"tune ({self.cfg.method})", unit="trial", disable=not progress)
        try:
            while len(finished) < self.cfg.budget:
                pending = [proposed[k] for k in sorted(proposed) if k not in finished]
                if not pending:
                    pending = self._propose(proposed, finished)
                    proposed.update({r["trial"]: r for r in pending})
                futures = [executor.submit(_call, self.objective, r["x"], r["trial"]) for r in pending]
                for trial, y, yvar, seconds, worker in executor.as_completed(futures):
                    record = {"event": "finished", "trial": trial, "method": proposed[trial]["method"], "x": proposed[trial]["x"],
                              "params": proposed[trial]["params"], "y": y, "yvar": yvar, "seconds": seconds, "worker": worker}
                    self._append(record)
                    finished[trial] = record
                    bar.update()
                    bar.set_postfix(best=f"{max(r['y'] for r in finished.values()):.4g}")
        finally:
            executor.close()
            bar.close()
        return self.summary(finished)

    def summary(self, finished: dict) -> dict:
        rows = [finished[k] for k in sorted(finished)]
        best = max(rows, key=lambda r: r["y"])
        return {"trials": len(rows), "best": {"trial": best["trial"], "y": best["y"], "params": best["params"], "method": best["method"]},
                "best_so_far": np.maximum.accumulate([r["y"] for r in rows]).tolist(), "config": asdict(self.cfg),
                "log": str(self.log_path)}


def make_objective(name: str, seed: int, **kwargs) -> Objective:
    from training.tune import objectives

    if name == "synthetic":
        return partial(_synthetic, seed=seed, delay_s=kwargs.get("delay_s", 0.0))
    return partial(objectives.closed_loop, seed=seed, **kwargs)


def _synthetic(x: np.ndarray, trial: int, seed: int, delay_s: float = 0.0) -> tuple[float, float]:
    from training.tune.objectives import synthetic

    time.sleep(delay_s)
    return synthetic(x, trial, seed)


def tune(out: Path, cfg: TuneConfig, objective: str = "closed-loop", baseline: bool = True, progress: bool = True, **objective_args) -> dict:
    """BO run (and, with ``baseline``, a same-budget Sobol run), plots, and ``tune.json`` in ``out``."""
    from dataclasses import replace

    from training.tune.plots import convergence, gp_slice

    out = Path(out)
    metric = objective_args["budget"].metric if "budget" in objective_args else "synthetic objective"

    def objective_for(name: str) -> Objective:
        extra = {"work": out / name / "trials"} if objective == "closed-loop" else {}
        return make_objective(objective, cfg.seed, **objective_args, **extra)

    space_name = objective_args["budget"].space if "budget" in objective_args else "learned"
    space, first = SPACES[space_name], FIRST_POINTS[space_name] if objective == "closed-loop" else []
    runs = {"BO": Tuner(out / "bo", cfg, objective_for("bo"), space, first).run(progress)}
    if baseline:
        runs["Sobol"] = Tuner(out / "sobol", replace(cfg, method="sobol"), objective_for("sobol"), space, first).run(progress)
    result = {"objective": objective, "metric": metric, "space": space_name, **{k.lower(): v for k, v in runs.items()}}
    x, y, yvar = Tuner.data(read_trials(out / "bo" / "trials.jsonl")[1])
    result["plots"] = [str(out / "convergence.png")] + ([str(out / f"gp_{space[0].name}.png")] if len(y) >= 3 else [])
    if not holds_json(out / "tune.json", result):  # a finished search, resumed, keeps its files
        convergence({k: v["best_so_far"] for k, v in runs.items()}, metric, out / "convergence.png")
        if len(y) >= 3:
            gp_slice(x, y, yvar, metric, space, out / f"gp_{space[0].name}.png")
        atomic_write_json(out / "tune.json", result)
    return result

"""``metasteer train``: behaviour cloning with a chosen loss. A learned loss is either meta-trained
first and then judged by the meta-test protocol (``--schedule pretrain``: frozen loss, fresh model),
or learned online along the shipped model's own run (``--schedule online``: a meta step every
``meta_every`` steps through that run's next Adam step, Meta-Weight-Net style).

Phases: ``meta`` (pretrained learned losses only: bilevel meta-training of phi) then ``fit`` (a model
trained with Adam on the loss, from scratch or fine-tuned from ``init_from``). The fit phase warms up and
decays the learning rate (cosine), clips the gradient norm, and keeps the snapshot that is best on
the validation episodes balanced over scene categories (mean of the per-category MAEs), so a long
run cannot end on a collapsed model. Checkpoints are atomic; ``resume`` continues a killed run to
the same final numbers as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from metasteer.preprocess import PreprocessSpec
from training.checkpoint import load, save_atomic
from training.data.arrays import ArraySet, Sampler, episode_subset, split_by_episode
from training.data.dataset import DrivingDataset
from training.data.label_view import LABELS, LabelView
from training.device import resolve_device
from training.evaluate_offline import offline_metrics, predict
from training.files import claim_request
from training.losses import LEARNED, LossSpec, make_loss
from training.meta.trainer import MetaConfig, MetaTrainer, PhiUpdater, emphasised_mse
from training.models import PilotNet, PilotNetConfig, penultimate_width
from training.models.io import load_model
from training.precision import PRECISIONS, Precision


@dataclass(frozen=True)
class TrainConfig:
    steps: int = field(default=1500, metadata={"range": (1, None), "help": "Adam steps of the model on the (frozen) loss"})
    batch_size: int = field(default=64, metadata={"range": (1, None), "help": "training batch size"})
    lr: float = field(default=1e-3, metadata={"range": (0.0, None), "help": "Adam step size of the model"})
    meta_steps: int = field(default=300, metadata={"range": (0, None), "help": "bilevel steps (learned losses only)"})
    meta_batch_size: int = field(default=32, metadata={"range": (1, None), "help": "meta batch size"})
    meta_abnormal_fraction: float = field(default=0.5, metadata={"range": (0.0, 1.0), "help": "share of abnormal frames in a meta batch"})
    val_fraction: float = field(default=0.1, metadata={"range": (0.01, 0.5), "help": "episodes held out for validation"})
    meta_fraction: float = field(default=0.15, metadata={"range": (0.01, 0.5), "help": "episodes held out as meta set when no --meta-data"})
    eval_every: int = field(default=250, metadata={"range": (1, None), "help": "validate (and maybe keep the snapshot) every N steps"})
    lr_schedule: str = field(default="cosine", metadata={"help": "learning rate: linear warm-up then cosine decay, or constant",
                                                         "choices": ("cosine", "constant")})
    warmup_steps: int = field(default=100, metadata={"range": (0, None), "help": "linear learning-rate warm-up steps (cosine)"})
    min_lr_ratio: float = field(default=0.05, metadata={"range": (0.0, 1.0), "help": "final learning rate as a fraction of --lr (cosine)"})
    grad_clip: float = field(default=1.0, metadata={"range": (0.0, None), "help": "clip the model's gradient norm to this (0: off)"})
    rare_fraction: float = field(default=0.0, metadata={"range": (0.0, 1.0), "help": "share of rare-scene frames in every batch (0: uniform sampling)"})
    select_best: bool = field(default=True, metadata={"help": "keep the snapshot best on category-balanced validation MAE "
                                                                 "(with --labels meta-only: on the labelled meta set)"})
    episode_fraction: float = field(default=1.0, metadata={"range": (0.01, 1.0), "help": "train on this share of the data's episodes (nested subsets; a data-budget sweep)"})
    init_from: str = field(default="", metadata={"help": "run directory or model.pt to fine-tune from (default: a fresh model)"})
    checkpoint_every: int = field(default=100, metadata={"range": (1, None), "help": "checkpoint every N steps"})
    seed: int = field(default=0, metadata={"range": (0, None), "help": "seed of splits, initialisation and batches"})
    device: str = field(default="auto", metadata={"help": "torch device: auto (CUDA where present), cpu, cuda"})
    width_mult: float = field(default=1.0, metadata={"range": (0.05, 8.0), "help": "PilotNet channel multiplier (1: the paper's widths)"})
    conv_layers: int = field(default=5, metadata={"range": (1, 5), "help": "PilotNet conv layers (1-5)"})
    linear_layers: int = field(default=4, metadata={"range": (1, 4), "help": "PilotNet linear layers (1-4)"})
    activation: str = field(default="elu", metadata={"help": "PilotNet activation", "choices": ("elu", "relu")})
    meta_conv_layers: int = field(default=0, metadata={"range": (0, 5), "help": "conv layers of the model used while meta-training (0: same)"})
    precision: str = field(default="fp32", metadata={"help": "forward pass of a training step: fp32, or bf16 autocast on channels-last "
                                                             "tensors (weights, loss and meta steps stay fp32)", "choices": PRECISIONS})
    labels: str = field(default="full", metadata={"help": "what training frames show the loss and sampler: full (scene features, "
                                                          "categories) or meta-only (a car's log; labels on the meta set only)",
                                                  "choices": LABELS})

    def arch(self, spec: PreprocessSpec, meta: bool = False) -> PilotNetConfig:
        """The model for inputs of ``spec``'s size (``meta``: the one used while meta-training)."""
        conv = (self.meta_conv_layers or self.conv_layers) if meta else self.conv_layers
        return PilotNetConfig(width_mult=self.width_mult, conv_layers=conv, linear_layers=self.linear_layers,
                              input_height=spec.height, input_width=spec.width, activation=self.activation)


def warm_start(cfg: TrainConfig, start: str | Path) -> TrainConfig:
    """``cfg`` fine-tuning from the run / model.pt ``start``, with that model's architecture."""
    arch = PilotNetConfig(**load_model(start)[1]["arch"])
    return replace(cfg, init_from=str(start), width_mult=arch.width_mult, conv_layers=arch.conv_layers, linear_layers=arch.linear_layers,
                   activation=arch.activation)


def input_spec(manifests: list[dict]) -> PreprocessSpec:
    """The input contract recorded by the datasets (their camera band and frame size); all must agree."""
    specs = set()
    for m in manifests:
        cam = m["camera"]
        if "preprocess" in cam:  # ingested bags record the spec their frames were cut with
            specs.add(PreprocessSpec.from_json(cam["preprocess"]))
        else:  # recorded worlds record the camera that rendered the band
            specs.add(PreprocessSpec(crop_top=cam["crop_top"], crop_bottom=cam["crop_bottom"], width=cam["output_size"][0],
                                     height=cam["output_size"][1]))
    if len(specs) != 1:
        raise ValueError(f"the datasets were recorded with different input contracts {sorted(map(str, specs))}; train on one")
    return specs.pop()


def dataset_hash(manifests: list[dict]) -> str:
    """Identity of the training data: SHA-256 over its shards' checksums (one dataset: as before)."""
    shards = manifests[0]["shards"] if len(manifests) == 1 else [m["shards"] for m in manifests]
    return hashlib.sha256(json.dumps(shards, sort_keys=True).encode()).hexdigest()


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for (0-based) ``step``: linear warm-up, then cosine down to ``min_lr_ratio * lr``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def balanced_mae(metrics: dict) -> float:
    """Mean over the scene categories present of their MAE: rare scenes count as much as the road."""
    maes = [m["mae"] for m in metrics["by_category"].values() if m["n"]]
    return float(np.mean(maes))


class BestSnapshot:
    """The model state with the lowest validation score seen so far (and its step)."""

    def __init__(self) -> None:
        self.step, self.score, self.state = 0, math.inf, None

    def offer(self, step: int, score: float, model: torch.nn.Module) -> bool:
        if not score < self.score:
            return False
        self.step, self.score = step, score
        self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True

    def state_dict(self) -> dict:
        return {"step": self.step, "score": self.score, "state": self.state}

    def load_state_dict(self, d: dict) -> None:
        self.step, self.score, self.state = d["step"], d["score"], d["state"]


@dataclass
class _State:
    phase: str
    step: int
    rows: list[dict]


class Run:
    """One training run in ``out``; ``run()`` trains (or resumes) and returns the result."""

    def __init__(self, out: Path, data: Path | list[Path], meta_data: Path | None, spec: LossSpec, meta: MetaConfig, cfg: TrainConfig) -> None:
        """``data``: one dataset directory or several (e.g. the original set and its DAgger rounds), trained on together."""
        self.out, self.spec, self.meta_cfg, self.cfg = Path(out), spec, meta, cfg
        self.device = resolve_device(cfg.device)
        paths = [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
        self.request = run_request(paths, meta_data, spec, meta, cfg)
        datasets = [DrivingDataset(d) for d in paths]
        self.manifests = [d.manifest for d in datasets]
        self.input = input_spec(self.manifests)
        episode = np.concatenate([d.columns["episode_seed"].astype(np.int64) for d in datasets])
        chosen = episode_subset(episode, cfg.episode_fraction) if cfg.episode_fraction < 1.0 else np.arange(len(episode))
        fractions = {"val": cfg.val_fraction} | ({} if meta_data else {"meta": cfg.meta_fraction})
        splits = {k: chosen[v] for k, v in split_by_episode(episode[chosen], fractions, cfg.seed).items()}
        self.view = LabelView(cfg.labels)
        self.view.labelled_meta(meta_data)  # meta-only without a labelled meta set is refused
        self.train, self.val = self.view.training(ArraySet.gather(datasets, splits["train"])), ArraySet.gather(datasets, splits["val"])
        self.meta = ArraySet.load(DrivingDataset(meta_data)) if meta_data else ArraySet.gather(datasets, splits["meta"])
        self.selected_on, self.select = self.view.selection(self.val, self.meta)
        torch.manual_seed(cfg.seed)  # the learned loss's initial phi
        self.loss = make_loss(spec, self.train.feature_names, self.train.y, self.train.extra,
                              penultimate=penultimate_width(cfg.arch(self.input))).to(self.device)
        self.learned = spec.loss in LEARNED
        self.online = self.learned and meta.schedule == "online"
        self.phases = (["meta"] if self.learned and not self.online else []) + ["fit"]

    def model_factory(self, seed: int, meta: bool = False) -> torch.nn.Module:
        torch.manual_seed(seed)
        arch = self.cfg.arch(self.input, meta)
        model = PilotNet(arch)
        if hasattr(self.loss, "watch"):  # a loss that reads the model's penultimate features
            self.loss.watch(model)
        if self.cfg.init_from and not meta:
            start, info = load_model(self.cfg.init_from)
            if PilotNetConfig(**info["arch"]) != arch:
                raise ValueError(f"{self.cfg.init_from}: architecture {info['arch']} differs from this run's {arch.to_dict()}")
            model.load_state_dict(start.state_dict())
        return model.to(self.device)

    # ---- checkpoints ------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _prepare_dir(self, resume: bool) -> None:
        if claim_request(self.out, self.request, "training run") and not resume and self.checkpoint_path.exists():
            raise ValueError(f"{self.out}: holds a started run; pass --resume to continue it or use another --out")

    # ---- phases -----------------------------------------------------------------------------------

    def run(self, resume: bool = False, progress: bool = True) -> dict:
        self._prepare_dir(resume)
        ckpt = load(self.checkpoint_path) if resume and self.checkpoint_path.exists() else None
        state = _State(ckpt["phase"], ckpt["step"], ckpt["rows"]) if ckpt else _State(self.phases[0], 0, [])
        if ckpt and ckpt.get("loss") is not None:
            self.loss.load_state_dict(ckpt["loss"])
        for phase in self.phases[self.phases.index(state.phase):]:
            if phase != state.phase:
                state, ckpt = _State(phase, 0, state.rows), None
            if phase == "meta":
                self._meta_phase(state, ckpt, progress)
            else:
                model = self._fit_phase(state, ckpt, progress)
        return self._finish(model, state.rows)

    def _save(self, state: _State, extra: dict) -> None:
        save_atomic({"phase": state.phase, "step": state.step, "rows": state.rows, "loss": self.loss.state_dict(), **extra},
                    self.checkpoint_path)

    def _task_loss(self):
        abnormal_col = self.meta.feature_names.index("abnormal") if "abnormal" in self.meta.feature_names else None
        return emphasised_mse(abnormal_col, self.meta_cfg.abnormal_emphasis)

    def _meta_phase(self, state: _State, ckpt: dict | None, progress: bool) -> None:
        cfg = self.cfg
        trainer = MetaTrainer(lambda seed: self.model_factory(seed, meta=True), self.loss, self._task_loss(), self.meta_cfg, seed=cfg.seed + 1)
        train_s = self.view.sampler(self.train, cfg.batch_size, cfg.seed + 2, 0.0)
        meta_s = Sampler(self.meta.abnormal, cfg.meta_batch_size, cfg.seed + 3, cfg.meta_abnormal_fraction)
        if ckpt:
            trainer.load_state_dict(ckpt["meta_trainer"])
            train_s.load_state_dict(ckpt["train_sampler"])
            meta_s.load_state_dict(ckpt["meta_sampler"])
        bar = tqdm(total=cfg.meta_steps, initial=state.step, desc=f"meta-train {self.spec.loss}", disable=not progress)
        while state.step < cfg.meta_steps:
            inner = [self.train.batch(train_s.next(), self.device) for _ in range(self.meta_cfg.unroll)]
            stats = trainer.step(inner, self.meta.batch(meta_s.next(), self.device))
            state.step += 1
            state.rows.append({"phase": "meta", "step": state.step, "global_step": state.step,
                               "train_loss": stats["inner_loss"], "task_loss": stats["task_loss"]})
            bar.update(1)
            bar.set_postfix(task=f"{stats['task_loss']:.4g}")
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.meta_steps:
                self._save(state, {"meta_trainer": trainer.state_dict(), "train_sampler": train_s.state_dict(),
                                   "meta_sampler": meta_s.state_dict()})
        bar.close()
        for p in self.loss.parameters():
            p.requires_grad_(False)  # meta-test: the loss is frozen from here on

    def _train_sampler(self, model: torch.nn.Module, seed: int):
        """The view's sampler, or the loss's own when it draws batches by its learned scores of ``model``'s frames."""
        if getattr(self.loss, "draws_batches", False):
            if self.cfg.rare_fraction:
                raise ValueError("the loss draws batches by its learned scores; --rare-fraction would draw them by category")
            return self.loss.sampler(model, self.train, self.cfg.batch_size, seed, self.device)
        return self.view.sampler(self.train, self.cfg.batch_size, seed, self.cfg.rare_fraction)

    def _fit_phase(self, state: _State, ckpt: dict | None, progress: bool) -> torch.nn.Module:
        cfg = self.cfg
        if self.learned and not self.online:
            for p in self.loss.parameters():
                p.requires_grad_(False)
        precision = Precision(cfg.precision, self.device)
        model = precision.prepare(self.model_factory(cfg.seed + 10_000))  # a fresh model: the meta-test protocol
        params = list(model.parameters()) + ([] if self.online else [p for p in self.loss.parameters() if p.requires_grad])
        opt = torch.optim.Adam(params, lr=cfg.lr)
        sampler = self._train_sampler(model, cfg.seed + 4)
        samplers = {"sampler": sampler}
        if self.online:
            phi = PhiUpdater(self.loss, self._task_loss(), self.meta_cfg)
            samplers["meta_sampler"] = Sampler(self.meta.abnormal, cfg.meta_batch_size, cfg.seed + 3, cfg.meta_abnormal_fraction)
            samplers["unroll_sampler"] = self._train_sampler(model, cfg.seed + 5)
        self.best = BestSnapshot()
        if ckpt:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])
            for name, s in samplers.items():
                s.load_state_dict(ckpt[name])
            self.best.load_state_dict(ckpt["best"])
            if self.online:
                phi.opt.load_state_dict(ckpt["phi_opt"])
        offset = cfg.meta_steps if "meta" in self.phases else 0
        bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {self.spec.loss}", disable=not progress)
        while state.step < cfg.steps:
            for group in opt.param_groups:
                group["lr"] = lr_at(state.step, cfg)
            x, y, extra = self.train.batch(sampler.next(), self.device)
            row = {}
            if self.online and state.step % self.meta_cfg.meta_every == 0:  # phi first, through the step the model is about to take (looked ahead in fp32 whatever the precision)
                inner = [(x, y, extra)] + [self.train.batch(samplers["unroll_sampler"].next(), self.device) for _ in range(self.meta_cfg.unroll - 1)]
                meta = phi.update(model, inner, self.meta.batch(samplers["meta_sampler"].next(), self.device), opt, cfg.grad_clip)
                row["task_loss"] = meta.task_loss
            loss = self.loss(precision.forward(model, x), y, extra)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            self.loss.zero_grad(set_to_none=True)  # phi learns from its meta-gradient only
            state.step += 1
            row |= {"phase": "fit", "step": state.step, "global_step": offset + state.step, "train_loss": float(loss.detach()),
                    "lr": opt.param_groups[0]["lr"]}
            if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
                m = offline_metrics(predict(model, self.select, device=self.device), self.select)
                row |= {"val_mae": m["overall"]["mae"], "val_mae_normal": m["normal"]["mae"], "val_mae_abnormal": m["abnormal"]["mae"],
                        "val_mae_balanced": balanced_mae(m)}
                self.best.offer(state.step, row["val_mae_balanced"], model)
            state.rows.append(row)
            bar.update(1)
            if state.step % 20 == 0:
                bar.set_postfix(loss=f"{row['train_loss']:.4g}")
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                self._save(state, {"model": model.state_dict(), "opt": opt.state_dict(), "best": self.best.state_dict(),
                                   **{name: s.state_dict() for name, s in samplers.items()},
                                   **({"phi_opt": phi.opt.state_dict()} if self.online else {})})
        bar.close()
        if cfg.select_best and self.best.state is not None:
            model.load_state_dict(self.best.state)
        return model

    def _finish(self, model: torch.nn.Module, rows: list[dict]) -> dict:
        from training.plots import learned_loss_plot, learning_curve

        pred = predict(model, self.val, device=self.device)
        metrics = offline_metrics(pred, self.val)
        best_step = self.best.step if self.cfg.select_best and self.best.state is not None else self.cfg.steps
        info = {"arch": self.cfg.arch(self.input).to_dict(), "preprocess": self.input.to_json(), "loss": asdict(self.spec),
                "meta": asdict(self.meta_cfg) if self.learned else None, "dataset_sha256": dataset_hash(self.manifests),
                "seed": self.cfg.seed, "val_metrics": metrics, "step": best_step}
        save_atomic({"state_dict": model.cpu().state_dict(), **info}, self.out / "model.pt")
        if self.learned:
            save_atomic({"state_dict": self.loss.state_dict(), "loss": asdict(self.spec), "feature_names": self.train.feature_names},
                        self.out / "loss.pt")
        keys = sorted({k for r in rows for k in r})
        with open(self.out / "log.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        title = f"{self.out.name}: loss {self.spec.loss}, seed {self.cfg.seed}"
        learning_curve(rows, self.out / "learning_curve.png", title)
        learned = learned_loss_plot(self.loss.cpu(), self.train, self.out / "learned_loss.png", title) if self.learned else None
        result = {"run": str(self.out), "loss": self.spec.loss, "seed": self.cfg.seed, "val": metrics, "best_step": best_step,
                  "best_step_chosen_on": self.selected_on, "val_mae_balanced": balanced_mae(metrics), "device": self.device,
                  "plots": [str(self.out / "learning_curve.png")] + ([str(learned)] if learned else [])}
        (self.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return result


def run_request(data: Path | list[Path], meta_data: Path | None, spec: LossSpec, meta: MetaConfig, cfg: TrainConfig) -> dict:
    """What a run was asked (its ``request.json``): a run directory serves only this request."""
    paths = [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
    return {"data": [str(d) for d in paths] if len(paths) > 1 else str(paths[0]), "meta_data": str(meta_data) if meta_data else None,
            "loss": asdict(spec), "meta": asdict(meta), "train": asdict(cfg)}


def train_once(out: Path, data: Path | list[Path], meta_data: Path | None, spec: LossSpec, meta: MetaConfig, cfg: TrainConfig,
               progress: bool = True) -> dict:
    """The result of the finished run ``out`` (its files untouched), or ``Run(out, ...)`` trained, resumed if it was
    killed: what a resumed pipeline, DAgger round or study does with a run. A finished run asked something else
    (e.g. another width) is refused, not read."""
    done = Path(out) / "result.json"
    if done.exists():
        claim_request(out, run_request(data, meta_data, spec, meta, cfg), "training run")
        return json.loads(done.read_text())
    return Run(out, data, meta_data, spec, meta, cfg).run(resume=True, progress=progress)

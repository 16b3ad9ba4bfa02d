"""``metasteer pipeline``: the main job, stage by stage, into one run directory.

Each stage writes its outputs under ``OUT/`` and is skipped when they are already complete, so a
killed pipeline resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.data.collect import CollectConfig, collect
from training.data.contact_sheet import contact_sheet
from training.data.dataset import DrivingDataset
from training.world.factory import WorldConfig


@dataclass(frozen=True)
class PipelineConfig:
    frames: int = field(default=20000, metadata={"help": "training frames to record"})
    seed: int = field(default=0, metadata={"help": "seed of the whole run"})
    quick: bool = field(default=False, metadata={"help": "small settings for a fast end-to-end pass"})

    @property
    def n_frames(self) -> int:
        return min(self.frames, 4000) if self.quick else self.frames


def run_pipeline(out: Path, world_cfg: WorldConfig, cfg: PipelineConfig, progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data" / "train"
    collect(data_dir, world_cfg, CollectConfig(frames=cfg.n_frames, seed=cfg.seed), progress=progress)
    dataset = DrivingDataset(data_dir)
    sheet = contact_sheet(dataset, out / "contact_sheet.png", seed=cfg.seed)
    report = {
        "run": str(out),
        "config": asdict(cfg),
        "world": world_cfg.world,
        "dataset": {"dir": str(data_dir), "frames": len(dataset), "counts": dataset.manifest["counts"],
                    "abnormal_share": dataset.manifest["abnormal_share"]},
        "contact_sheet": str(sheet),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

"""A contact sheet of a dataset: normal and abnormal frames with their labels, and the label
distribution of each, in one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.dataset import DrivingDataset


def contact_sheet(dataset: DrivingDataset, out: str | Path, per_group: int = 12, seed: int = 0) -> Path:
    from training.figures import pyplot

    plt = pyplot()

    rng = np.random.default_rng(seed)
    cats = dataset.columns["category"]
    groups = [("normal", np.flatnonzero(~dataset.abnormal)), ("abnormal", np.flatnonzero(dataset.abnormal))]
    cols = 4
    rows_per_group = int(np.ceil(per_group / cols))
    fig = plt.figure(figsize=(cols * 3.2, (2 * rows_per_group) * 1.35 + 2.6))
    grid = fig.add_gridspec(2 * rows_per_group + 1, cols, height_ratios=[1] * (2 * rows_per_group) + [1.9])
    steer = dataset.steer
    for g, (name, idx) in enumerate(groups):
        pick = np.sort(rng.choice(idx, size=min(per_group, len(idx)), replace=False)) if len(idx) else []
        images = dataset.images(pick) if len(pick) else []
        for j in range(rows_per_group * cols):
            ax = fig.add_subplot(grid[g * rows_per_group + j // cols, j % cols])
            ax.axis("off")
            if j < len(pick):
                i = pick[j]
                ax.imshow(images[j][:, :, ::-1])
                h, w = images[j].shape[:2]
                ax.annotate("", xy=(w / 2 + steer[i] * w * 0.8, h * 0.55), xytext=(w / 2, h * 0.95),
                            arrowprops={"arrowstyle": "->", "color": "red" if name == "abnormal" else "yellow", "lw": 2})
                ax.set_title(f"{name}: {cats[i]}  steer {steer[i]:+.3f}", fontsize=7)
    ax = fig.add_subplot(grid[-1, :])
    bins = np.linspace(-1, 1, 81)
    for name, idx in groups:
        if len(idx):
            ax.hist(steer[idx], bins=bins, alpha=0.6, density=True, label=f"{name} ({len(idx)} frames)")
    ax.set_yscale("log")
    ax.set_xlabel("steer label (CARLA units, +1 = full right)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    m = dataset.manifest
    fig.suptitle(f"{dataset.root.name}: {m['frames']} frames, world {m['world']}, seed {m['seed']}, "
                 f"abnormal {m['abnormal_share']:.1%}", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

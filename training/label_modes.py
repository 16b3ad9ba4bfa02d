"""What a labels mode runs: the pipeline's closed-loop searches and the models it ships, by mode.

``full`` (every training frame's scene labels): oversampling and the learned loss, as always. ``meta-only``
(issue 19: only the small meta set is labelled): the same two, the learned search running the label-free
weighting (``label-free``), plus every label-free baseline (``BASELINES``) as a search of its own. Every
search of a mode gets the same budget (trials, trial steps, tuning routes) and the same choice rule
(``pipeline.choose``: the best finalists re-driven on fresh tuning routes); oversampling, the full-label
reference, always sees labels. Each search's shipped model is named after the search: ``mse`` (the learned
search's first trial, tau = 0), then ``SEARCHES[labels]`` in order.

Which baseline is "the best" is decided on tuning routes only (``best_baseline``): the baseline whose chosen
finalist passed the most rare scenes over its trial's routes and the fresh tuning routes together. Held-out
routes choose nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.tune.space import BASELINE_SPACES

BASELINES = tuple(BASELINE_SPACES)  # keyframe, failure-proximity, loss-emphasis, steer-bins


@dataclass(frozen=True)
class Search:
    """One closed-loop search: its space (``training.tune.space.SPACES``), what its training frames show
    (``train --labels``), and whether its model ships only when it beats MSE on the fresh tuning routes,
    paired (``guarded``: MSE ships in its place otherwise; every space but oversampling's holds MSE)."""

    space: str
    labels: str
    guarded: bool


SEARCHES: dict[str, dict[str, Search]] = {
    "full": {"oversample": Search("oversample", "full", False), "learned": Search("learned", "full", True)},
    "meta-only": {"oversample": Search("oversample", "full", False), "learned": Search("label-free", "meta-only", True),
                  **{b: Search(b, "meta-only", True) for b in BASELINES}},
}
# held-out paired differences besides every model against MSE (compare's ``against``: one reference per model)
PAIRED = {"learned": "oversample"}
# oversampling shares a study retrains besides the tuned one (its frontier); the label-scarce study judges against the
# tuned share only: the frontier is the full-label study's question, and each share costs a retraining and a drive per seed
FRONTIER = {"full": (0.1, 0.25, 0.5), "meta-only": ()}


def names(labels: str) -> tuple[str, ...]:
    """The models a pipeline in mode ``labels`` ships and compares, in order."""
    return ("mse", *SEARCHES[labels])


def baselines(names_: list[str] | tuple[str, ...]) -> list[str]:
    """The label-free baselines among ``names_`` (none in the full-label mode), in ``BASELINES`` order."""
    return [b for b in BASELINES if b in names_]


def tuning_scores(report: dict) -> dict[str, float]:
    """Each label-free baseline's tuning score in a pipeline report: the pooled rare-scene pass rate (its
    trial's routes and the fresh tuning routes) of the finalist ``choose`` picked for it (also where MSE shipped
    in its place)."""
    choice = report["choice"]
    picked = {b: choice["best"][b] for b in baselines(list(choice.get("best", {})))}
    return {b: choice["finalists"][k]["pooled"] for b, k in picked.items() if k != "mse"}  # "mse": the search had no finalist


def best_baseline(report: dict) -> str | None:
    """The label-free baseline with the best tuning score (``tuning_scores``; ties: ``BASELINES`` order); None
    without baselines. Reads the choice on tuning routes only, never the held-out comparison."""
    scores = tuning_scores(report)
    return max(scores, key=lambda b: (scores[b], -BASELINES.index(b))) if scores else None

"""Rare-scene *encounters*: the distinct pedestrians, obstacles and sharp bends an episode meets.

A frame's ``category`` says which rare scene it is in; an encounter is a run of frames of one rare
category, with gaps of up to ``max_gap`` frames of anything else bridged (the category flickers
when a wobbling ego drifts in and out of an actor's path). Collection counts encounters as the
dataset's *events*; ``compare`` judges each encounter as passed or failed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

RARE_CATEGORIES = ("pedestrian", "obstacle", "sharp_bend")


@dataclass(frozen=True)
class Encounter:
    """Frames ``start`` .. ``end`` (inclusive) of an episode, all of ``category`` or bridged gaps."""

    category: str
    start: int
    end: int


def encounters(categories: Sequence[str], max_gap: int) -> list[Encounter]:
    """Encounters in one episode's per-frame categories, in order of onset."""
    found: list[Encounter] = []
    last: dict[str, int] = {}  # category -> index in ``found`` of its most recent encounter
    for i, cat in enumerate(categories):
        if cat not in RARE_CATEGORIES:
            continue
        k = last.get(cat)
        if k is not None and i - found[k].end - 1 <= max_gap:
            found[k] = Encounter(cat, found[k].start, i)
        else:
            last[cat] = len(found)
            found.append(Encounter(cat, i, i))
    return found


def count_events(categories: Sequence[str], episodes: Sequence[int], max_gap: int) -> dict[str, int]:
    """Encounters per rare category over frames of several episodes (``episodes``: id per frame, contiguous)."""
    counts: Counter[str] = Counter()
    start = 0
    for i in range(1, len(categories) + 1):
        if i == len(categories) or episodes[i] != episodes[start]:
            counts.update(e.category for e in encounters(categories[start:i], max_gap))
            start = i
    return {c: int(counts[c]) for c in RARE_CATEGORIES}

"""Small directories to commit (``--keep``) that outlive a long job's ``--out``: this machine's ``runs/`` goes
with it, and a full-size pipeline or study takes longer than one machine lives.

A job copies what each finished part leaves into its keep directory as the part ends, and a later job
restores a fresh ``--out`` from it before it starts, so finished parts are read, not redone. A part's
marker (the file that says it is finished) is copied last both ways: a copy cut short leaves the part
unfinished, never a marker without its files.
"""

from __future__ import annotations

from pathlib import Path

from training.files import atomic_copy, claim_request

MARKERS = ("trials.jsonl", "tune.json", "report.json")  # a search's log and summary, a run's report


def keep_files(out: Path, keep: Path | None, patterns: tuple[str, ...]) -> None:
    """Copy ``out``'s files matching ``patterns`` (relative globs, copied in this order) into ``keep``; a kept file
    that already holds the same bytes is left untouched (a resumed job, re-keeping, does not churn the commit)."""
    for src in (p for pattern in patterns for p in sorted(out.glob(pattern)) if p.is_file()) if keep else ():
        dst = keep / src.relative_to(out)
        if not (dst.exists() and dst.read_bytes() == src.read_bytes()):
            atomic_copy(src, dst)


def restore(out: Path, keep: Path) -> None:
    """Copy into ``out`` every file of ``keep`` it lacks, markers last."""
    for src in sorted((p for p in Path(keep).rglob("*") if p.is_file()), key=lambda p: p.name in MARKERS):
        if not (out / src.relative_to(keep)).exists():
            atomic_copy(src, out / src.relative_to(keep))


def claim_dirs(out: Path, keep: Path | None, settings: dict, what: str) -> None:
    """``out`` and ``keep`` hold the job's ``settings`` (``request.json``) and refuse another's: both are checked
    before either is written, so a refusal leaves a fresh directory free for the corrected command; ``keep``
    must lie apart from ``out``."""
    dirs = [out] + ([keep] if keep else [])
    if keep and (out.resolve().is_relative_to(keep.resolve()) or keep.resolve().is_relative_to(out.resolve())):  # equal included
        raise ValueError(f"--keep {keep} must lie outside --out {out} (and not hold it): it is what outlives it")
    for d in sorted(dirs, key=lambda d: not (d / "request.json").exists()):  # the ones holding settings first: they only check
        claim_request(d, settings, what)

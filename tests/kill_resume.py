"""Is a pipeline killed in any stage resumed without redoing the finished ones, to the same report? (issue 21,
item 5). In a copy of the committed tree (``git archive HEAD``; the shared working tree is never touched):
run ``metasteer pipeline --size quick`` once to the end (the reference), then for each chosen stage K run it
into a fresh directory, SIGKILL its whole process group the moment the progress line ``== K/N ...`` appears,
record every file (mtime_ns, inode, size), run the same command again to the end and check

- untouched: every file of a stage finished before K (the stage's output dirs, ``STAGE_OUTPUTS``) has the same
  mtime and inode (an atomic rewrite is a new inode) and still exists; files of stage K and later may change;
- report equal: report.json equals the reference's, the run directory's path and the wall times (``timings_s``)
  aside (both runs use the same copy, so the exported models' git commit is the same).

Not part of ``make test`` (pytest collects ``test_*.py`` only). Each quick pipeline takes minutes on 2 cores.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python tests/kill_resume.py [--stages 3 6 9] [--seed N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import file_stamps  # noqa: E402
from tests.mutations import _copy_of_head  # noqa: E402  (one way to copy HEAD)
from training.label_modes import SEARCHES  # noqa: E402
from training.pipeline import stage_count  # noqa: E402

PROGRESS = re.compile(r"^== (\d+)/(\d+) (.*)$")  # training.pipeline._stage
SAMPLED = 3  # stages sampled when --stages is not given
DROPPED = ("timings_s",)  # report.json's wall times: differ between any two runs


def stage_outputs(labels: str = "full") -> dict[int, tuple[str, ...]]:
    """Each stage of a pipeline run in mode ``labels`` and the paths (relative to OUT; a trailing / is a directory) it
    writes, read from ``training.pipeline.run_pipeline`` and ``train_base``. The export stage's model cards
    (export/*.md) and the report are written after the last stage."""
    searches, n = tuple(SEARCHES[labels]), stage_count(labels)  # a search per stage from 5 on, each its own tune/<name>/
    outputs = {1: ("data/", "contact_sheet.png"), 2: ("runs/mse/",), 3: ("dagger/",), 4: ("dagger/check/",)}
    outputs |= {5 + k: (f"tune/{name}/",) for k, name in enumerate(searches)}
    return outputs | {n - 2: ("choice/",), n - 1: ("export/",), n: ("compare/", "report.json", "report.md")}


def owner(rel: str, outputs: dict[int, tuple[str, ...]]) -> int | None:
    """The stage whose output ``rel`` is: the longest matching path (dagger/check/ is stage 4, not 3)."""
    matches = [(len(p), k) for k, paths in outputs.items() for p in paths if rel == p or (p.endswith("/") and rel.startswith(p))]
    return max(matches)[1] if matches else None


def pipeline(copy: Path, out: Path, kill_at: int | None = None) -> dict:
    """``metasteer pipeline --size quick --out OUT`` from ``copy``; with ``kill_at``: SIGKILL its process group
    (the route workers too) as soon as stage ``kill_at``'s progress line is printed."""
    cmd = [sys.executable, "-m", "training.cli", "pipeline", "--size", "quick", "--out", str(out), "--json", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(copy))  # the copy's packages before the editable install's
    start, stages, tail, killed = time.perf_counter(), [], [], False
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:
            tail = (tail + [line])[-40:]
            if m := PROGRESS.match(line.strip()):
                stages.append({"stage": int(m[1]), "of": int(m[2]), "name": m[3], "at_s": round(time.perf_counter() - start, 1)})
                if int(m[1]) == kill_at:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = True
                    break
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"rc": proc.returncode, "killed": killed, "stages": stages, "seconds": round(time.perf_counter() - start, 1),
            "stderr_tail": "".join(tail)[-3000:]}


def normalized_report(out: Path) -> dict:
    """report.json with the run directory's path replaced and the wall times dropped."""
    report = json.loads((out / "report.json").read_text().replace(str(out), "<run>"))
    return {k: v for k, v in report.items() if k not in DROPPED}


def differences(a, b, path: str = "") -> list[str]:
    """The key paths where ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in
                (differences(a[k], b[k], f"{path}.{k}") if k in a and k in b else [f"{path}.{k} (only in one)"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "."]


def kill_and_resume(copy: Path, work: Path, k: int, reference: dict, outputs: dict[int, tuple[str, ...]]) -> dict:
    """Kill a run at stage ``k``, resume it, check the finished stages' files and the report."""
    out = work / f"killed-at-{k}"
    killed = pipeline(copy, out, kill_at=k)
    before = file_stamps(out)
    resumed = pipeline(copy, out)
    after = file_stamps(out)
    finished = {rel: s for rel, s in before.items() if (o := owner(rel, outputs)) is not None and o < k}
    touched = sorted(rel for rel, s in finished.items() if after.get(rel) != s)
    unmapped = sorted(rel for rel in set(before) | set(after) if owner(rel, outputs) is None)
    diffs = differences(reference, normalized_report(out)) if resumed["rc"] == 0 else ["(no report: the resumed run failed)"]
    row = {"stage": k, "name": next((s["name"] for s in killed["stages"] if s["stage"] == k), "?"), "killed": killed["killed"],
           "killed_after_s": killed["seconds"], "resume_rc": resumed["rc"], "resume_s": resumed["seconds"],
           "files_at_kill": len(before), "finished_stage_files": len(finished), "touched": touched, "unmapped": unmapped,
           "untouched": killed["killed"] and not touched and not unmapped, "report_differences": diffs[:20],
           "report_equal": resumed["rc"] == 0 and not diffs}
    if resumed["rc"] != 0:
        row["stderr_tail"] = resumed["stderr_tail"]
    shutil.rmtree(out, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=None, help=f"stages to kill in (default: {SAMPLED} sampled with --seed)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampled stages (default: from the clock; printed)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (last line)")
    args = parser.parse_args(argv)
    outputs = stage_outputs()
    n = max(outputs)
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    chosen = sorted(args.stages) if args.stages else sorted(random.Random(seed).sample(range(1, n + 1), SAMPLED))
    if bad := [k for k in chosen if not 1 <= k <= n]:
        parser.error(f"--stages {bad}: a quick full-label pipeline has stages 1-{n}")
    print(f"kill_resume: stages {chosen}" + ("" if args.stages else f" (sampled, --seed {seed})"), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="metasteer-kill-resume-") as tmp:
        work = Path(tmp)
        copy = work / "tree"
        _copy_of_head(copy)
        ref = pipeline(copy, work / "reference")
        if ref["rc"] != 0 or [s["stage"] for s in ref["stages"]] != list(range(1, n + 1)):
            print(f"the reference run failed (exit {ref['rc']}) or its stages are not 1-{n}:\n{ref['stderr_tail']}", file=sys.stderr)
            return 2
        print(f"reference: {ref['seconds']} s", file=sys.stderr, flush=True)
        reference = normalized_report(work / "reference")
        rows = []
        for k in chosen:
            rows.append(kill_and_resume(copy, work, k, reference, outputs))
            r = rows[-1]
            print(f"stage {k}: untouched {r['untouched']}, report equal {r['report_equal']} ({r['killed_after_s']} + {r['resume_s']} s)",
                  file=sys.stderr, flush=True)
    print("| killed at stage | finished stages' files | untouched | report equal |\n|---|---|---|---|")
    for r in rows:
        bad = r["touched"][:3] + [f"unmapped: {u}" for u in r["unmapped"][:3]]
        untouched = "yes" if r["untouched"] else "**no**" + (f" ({', '.join(bad)})" if bad else " (not killed)")
        equal = "yes" if r["report_equal"] else f"**no** ({', '.join(r['report_differences'][:3])})"
        print(f"| {r['stage']} `{r['name']}` | {r['finished_stage_files']} | {untouched} | {equal} |")
    ok = all(r["untouched"] and r["report_equal"] for r in rows)
    if args.json:
        print(json.dumps({"command": "metasteer pipeline --size quick --out OUT --json --no-progress", "seed": None if args.stages else seed,
                          "stages": chosen, "stage_outputs": outputs, "reference_s": ref["seconds"],
                          "reference_stages": ref["stages"], "rows": rows, "ok": ok}, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

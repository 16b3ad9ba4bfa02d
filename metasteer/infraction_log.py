"""Infraction log of a drive: JSON lines (time, model id, event type, details), flushed per event,
and a per-model summary (infractions per km, time without infractions) on close. A jump of the clock
is logged as an event of its own (not an infraction) and counted in the summary record."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from metasteer.infractions import lane_marking_name


class InfractionLog:
    """Infraction events of a drive as JSON lines in ``path`` (flushed per event), with time and
    distance per model id (``odometry``: seconds and m/s in the clock the camera is stamped in), and a
    per-model summary (infractions per km, time without infractions) appended by ``close``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", buffering=1)
        self.distance_m: dict[str, float] = defaultdict(float)
        self.time_s: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.first_time: dict[str, float] = {}
        self.clock_jumps = 0

    def odometry(self, model_id: str, dt_s: float, speed_mps: float) -> None:
        """Time and distance driven by ``model_id`` (called per control period)."""
        self.time_s[model_id] += dt_s
        self.distance_m[model_id] += max(0.0, speed_mps) * dt_s

    def _write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def collision(self, t: float, model_id: str, other_actor_id: int, impulse: tuple[float, float, float]) -> None:
        self._event(t, model_id, "collision", {"other_actor_id": int(other_actor_id), "normal_impulse": list(map(float, impulse))})

    def lane_invasion(self, t: float, model_id: str, markings: list[int]) -> None:
        self._event(t, model_id, "lane_invasion", {"crossed_lane_markings": [int(m) for m in markings],
                                                   "names": [lane_marking_name(m) for m in markings]})

    def clock_jump(self, t: float, model_id: str, delta_s: float) -> None:
        """The clock jumped by ``delta_s`` to ``t`` (e.g. a world reload): logged, never driving time."""
        self.clock_jumps += 1
        self._write({"time": t, "model_id": model_id, "event": "clock_jump", "details": {"delta_s": delta_s}})

    def _event(self, t: float, model_id: str, kind: str, details: dict) -> None:
        self.counts[model_id] += 1
        self.first_time.setdefault(model_id, self.time_s[model_id])
        self._write({"time": t, "model_id": model_id, "event": kind, "details": details})

    def summary(self) -> dict:
        models = sorted(set(self.time_s) | set(self.counts))
        out = {}
        for m in models:
            km = self.distance_m[m] / 1000.0
            out[m] = {"infractions": self.counts[m], "distance_m": self.distance_m[m], "time_s": self.time_s[m],
                      "infractions_per_km": self.counts[m] / km if km > 0 else None,
                      "time_without_infractions_s": self.first_time.get(m, self.time_s[m])}
        return out

    def close(self) -> dict:
        summary = self.summary()
        if not self._fh.closed:
            self._write({"event": "summary", "per_model": summary, "clock_jumps": self.clock_jumps})
            self._fh.close()
        return summary

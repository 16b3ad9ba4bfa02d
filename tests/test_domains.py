"""Concurrent runs on one machine never share a ROS domain (``metasteer.nodes.launching.reserve_domain``): on
a shared one a node would answer another run's frames. Reservations live in child processes: a test worker's own stay free."""

import json
import subprocess
import sys

from tests.conftest import ROOT

HOLDER = """
import json, sys
from metasteer.nodes.launching import reserve_domain
print(json.dumps([reserve_domain() for _ in range(int(sys.argv[1]))]), flush=True)
sys.stdin.readline()  # hold them until told
"""
FORKED = """
import json, multiprocessing
from metasteer.nodes.launching import process_domain

def child(q):
    q.put(process_domain())

if __name__ == "__main__":
    mine = process_domain()
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    print(json.dumps([mine, process_domain(), q.get(timeout=60)]))
    p.join()
"""


def _holder(n: int) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(n)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def test_reserved_domains_are_distinct_within_and_across_live_processes():
    a, held_a = _holder(60)
    b, held_b = _holder(60)
    try:
        assert len(set(held_a)) == 60 and len(set(held_b)) == 60  # 60 random picks of 230 would repeat ~8 times
        assert not set(held_a) & set(held_b)
    finally:
        for p in (a, b):
            p.communicate("\n", timeout=30)


def test_a_forked_worker_gets_its_own_domain_and_its_parent_keeps_one():
    mine, again, child = json.loads(subprocess.run([sys.executable, "-c", FORKED], cwd=ROOT, capture_output=True, text=True,
                                                   check=True, timeout=120).stdout)
    assert mine == again and child != mine

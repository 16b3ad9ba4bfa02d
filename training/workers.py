"""Worker processes that die with the process that started them.

A run killed with SIGKILL cannot stop its workers, and a worker blocked on its task queue never notices: it
lives on, and one in the middle of a trial or a shard goes on writing the files the resumed run is rewriting.
Every pool of this package starts its workers here, with the initializer the node launcher uses too: on Linux
each asks the kernel (``PR_SET_PDEATHSIG``) for SIGKILL when its parent dies; elsewhere the pools are plain ones.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from multiprocessing.pool import Pool

from metasteer.nodes.launching import die_with_parent


def pool(processes: int) -> Pool:
    """A spawn-context ``multiprocessing`` pool whose workers die with this process."""
    return get_context("spawn").Pool(processes, initializer=die_with_parent, initargs=(os.getpid(),))


def executor(workers: int) -> ProcessPoolExecutor:
    """A spawn-context ``ProcessPoolExecutor`` whose workers die with this process."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))

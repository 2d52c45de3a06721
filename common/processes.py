"""How worker processes start: forked from a server that imported what they need once.

A spawned worker imports torch and its module again (~3 CPU-seconds apiece); a worker forked from
this process could inherit locks held by its threads. A fork server (multiprocessing's forkserver)
is a single-threaded process that imports the given modules once and forks each worker from
itself. Where there is none (Windows), workers are spawned.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def worker_context(*preload: str) -> BaseContext:
    """The multiprocessing context for worker processes that import `preload` (module names)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context

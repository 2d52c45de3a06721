"""Memory freed by the page and its judging process given back to the system (inference.app): both
live long and handle one large file after another.

glibc's allocator maps a buffer of 128 KB or more on its own and unmaps it when freed, but each
time such a buffer is freed it raises that size to the buffer's own (up to 32 MB): from then on the
buffers below it come from its heaps, and a freed one is kept there for reuse. Photos of different
sizes leave holes that the next photo's buffers do not fit, and the heaps only grow: the page went
from 909 MB to 1.6 GB over 24 photos of 25 MP, still climbing.

The page fixes that size at 1 MB (`give_back_large_buffers`), which glibc then keeps: each check's
images are mapped apart and unmapped when freed. The judging process does not: its models' many
buffers of a few MB, mapped afresh each time, made judging 35-50% slower (a tiny model, 9 MP photos);
it gives back what each judgement freed once it has answered (`give_back_freed_memory`) instead.
Where the C library has no such function (musl, macOS) or none can be reached this way (Windows,
where ctypes.CDLL(None) raises TypeError), both do nothing and return False; neither raises.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
LARGE_BUFFER_BYTES = 2**20


def _libc_function(name: str):
    """The C library's function `name` (of this process's own C library), or None where it has none
    or it cannot be reached (Windows: no C library loads by the name None, a TypeError)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):
        return None


def give_back_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Have the C library map each buffer of `threshold` bytes or more on its own and unmap it when
    freed, for the rest of this process. False where it has no such setting (not glibc)."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold) == 1


def give_back_freed_memory() -> bool:
    """Return the pages of the C library's heaps that hold only freed memory to the system (a few
    milliseconds). True where some were returned; False where none were, or not glibc."""
    malloc_trim = _libc_function("malloc_trim")
    return malloc_trim is not None and malloc_trim(0) == 1

"""Cap glibc's malloc arenas in the processes that serve models.

glibc gives threads that allocate at the same time arenas of their own, up to eight per core, and
memory freed inside an arena mostly stays with it. The service allocates a whole model at every
swap (the booster and its compiled forest: hundreds of MB for a 1,200-tree champion) from whichever
thread does it, while dozens of request threads allocate too. Measured here with the load test's
champion: RSS grew from 580 MB to 2 GB over 12 swaps under concurrent predictions, and stayed flat
at ~790 MB with two arenas. `MALLOC_ARENA_MAX=2` in the environment does the same; this applies
it from inside, before the service starts its threads, where that variable is not set.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # glibc's malloc.h
DEFAULT_ARENAS = 2


def cap_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """True if the cap was set; False off glibc or when MALLOC_ARENA_MAX already decides."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and friends: no per-thread arenas to cap
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))

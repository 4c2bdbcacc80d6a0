"""The memory allocator leanbert's heavy commands run under: freed memory kept, so no step pays page faults.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh mapping and
unmaps it on free, so each large temporary costs one page fault per 4 KB page on first touch, every
call. A dense feed-forward over 8,192 tokens allocates ~225 MB of temporaries (the 8,192 x 3,072
hidden activations before and after GELU, and the output): 49,154 page faults a call, measured at
20-25% of its time on this project's 2-core VM. The FFF kernel recycles its output buffers, so
it pays none. Comparing the two under the default allocator would credit the kernel with the
dense side's page faults; `keep_freed_memory` removes them from both:

    mallopt(M_MMAP_MAX, 0)                 every allocation comes from the heap, none is mmapped
    mallopt(M_TRIM_THRESHOLD, 2 GiB - 1)   freed memory stays in the heap for the next allocation

which is what the env variables MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=... do at start-up,
and what jemalloc or tcmalloc do by design. It applies to allocations made after the call, for
the rest of the process (memory freed is not returned to the OS: the process keeps its peak
resident size until it exits), so `leanbert.cli.main` calls it first for the commands that train,
evaluate or benchmark (`add_allocator_option`; `--default-allocator` opts out). Training gains as
much as a benchmark: every step frees and reallocates the same activations. `faults_per_call`
counts page faults, to check that neither side of a benchmark pays any.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import resource
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_MAX = -4
_KEEP = "glibc, freed memory kept: mallopt(M_MMAP_MAX, 0), mallopt(M_TRIM_THRESHOLD, 2 GiB - 1)"


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    """Mark a command as heavy: `main` keeps freed memory before running it, unless `--default-allocator`."""
    parser.add_argument("--default-allocator", dest="keep_freed_memory", action="store_false",
                        help="leave glibc's allocator as it is (by default freed memory is kept for reuse, so that "
                             "large temporaries do not pay page faults each step; see leanbert/allocator.py)")


def keep_freed_memory() -> str:
    """Make glibc keep freed memory for reuse (see the module docstring); returns what was done."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows): nothing to set
        return f"default ({name or 'no C library found'}: no mallopt)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)):
        return "default (mallopt refused the settings)"
    return _KEEP


def minor_faults() -> int:
    """Minor page faults of this process so far (pages mapped on first touch)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def faults_per_call(candidates: dict[str, Callable[[], object]]) -> dict[str, int]:
    """Page faults of one call of each candidate (run after its timing, so warm)."""
    counts = {}
    for name, run in candidates.items():
        before = minor_faults()
        run()
        counts[name] = minor_faults() - before
    return counts

"""Compiled CPU kernels: one C++ source built for the host CPU on first use, or a reported fallback.

A `NativeOps` names one PyTorch C++ extension library (its operators register themselves under
`torch.ops.<namespace>`). `available()` builds it on the first call, with -O3 -march=native and
OpenMP (so `at::parallel_for` runs on PyTorch's own thread pool), into PyTorch's extension cache
(`TORCH_EXTENSIONS_DIR`); later processes load the built library. The library's name carries a
tag of the CPU's instruction set, so a library built on one CPU is never loaded on another that
shares the cache directory.

Building needs a C++ compiler and `ninja` (a dependency). `LEANBERT_NATIVE=0` turns every
compiled kernel off. When a library cannot be built, `available()` is False, a warning says why
once, and the caller's plain path serves instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
from pathlib import Path

from leanbert.cpuinfo import first_cpu

logger = logging.getLogger(__name__)


def cpu_tag() -> str:
    """A short tag for this CPU's instruction set (the builds use -march=native)."""
    cpu = first_cpu()
    flags = platform.machine() + cpu.get("flags", cpu.get("Features", ""))  # x86, ARM
    return hashlib.blake2b(flags.encode(), digest_size=4).hexdigest()


class NativeOps:
    """One compiled library: `name` for logs, `source` its C++ file, `fallback` what serves without it."""

    def __init__(self, name: str, source: Path, fallback: str):
        self.name, self.source, self.fallback = name, source, fallback
        self.ok: bool | None = None  # None until the first `available()`

    def build(self, march: str = "native", defines: tuple[str, ...] = (), tag: str | None = None) -> None:
        """Builds and loads the library for `march`. Tests build variants for another instruction set
        under another `tag` (the library's file name) and with `defines` (-D flags, e.g. another
        operator namespace, so that both load in one process)."""
        from torch.utils import cpp_extension

        cpp_extension.load(
            name=f"leanbert_{self.name}_{tag or cpu_tag()}",
            sources=[str(self.source)],
            extra_cflags=["-O3", f"-march={march}", "-fopenmp", *(f"-D{define}" for define in defines)],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )

    def available(self) -> bool:
        """Whether the library is loaded here; builds it on the first call."""
        if self.ok is None:
            if os.environ.get("LEANBERT_NATIVE", "1") == "0":
                self.ok = False
            else:
                try:
                    logger.info("loading leanbert's compiled %s kernels (built once per machine, ~20 s)", self.name)
                    self.build()
                    self.ok = True
                except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as error:
                    # no compiler, no ninja, a failed build or load: the plain path serves
                    logger.warning("leanbert: the compiled %s kernels are unavailable (%s); using %s",
                                   self.name, error, self.fallback)
                    self.ok = False
        return self.ok

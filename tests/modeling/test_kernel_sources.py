"""The compiled kernels' branches for the other instruction set still compile on this host.

Each host builds the kernels once for its own CPU (-march=native), so an AVX2 host never compiles
the AVX-512 code (the attention's tiles, the FFF forward's 16-float vectors) and an AVX-512 host
never compiles the AVX2 code. This compiles each source for the other one, syntax and types only
(-fsyntax-only: nothing is built or loaded, ~15 s each); what runs here is compared with its
reference path in the kernels' own tests, and the FFF forward's plain (no-AVX) build in
tests/modeling/ffn/test_fff_native.py.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sysconfig

import pytest

from leanbert.cpuinfo import first_cpu
from leanbert.modeling.attention import native as attention_native
from leanbert.modeling.ffn import fff_native

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or shutil.which(os.environ.get("CXX", "c++")) is None,
    reason="the other instruction set is checked on x86-64 hosts with a C++ compiler",
)


def other_march() -> str:
    """An -march for the instruction set this host's own builds do not compile."""
    return "haswell" if "avx512f" in first_cpu().get("flags", "").split() else "skylake-avx512"


def test_sources_compile_for_the_other_instruction_set():
    from torch.utils import cpp_extension

    includes = [f"-I{path}" for path in [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]]
    compilers = {  # both at once: ~15 s each, most of it in PyTorch's headers
        library.name: subprocess.Popen(
            [os.environ.get("CXX", "c++"), "-std=c++20", "-fsyntax-only", "-fopenmp", f"-march={other_march()}",
             *includes, str(library.source)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for library in (fff_native.LIBRARY, attention_native.LIBRARY)
    }
    failed = {}
    for name, compiler in compilers.items():
        _, stderr = compiler.communicate()
        if compiler.returncode != 0:
            failed[name] = "\n".join([line for line in stderr.splitlines() if "error" in line][:20]) or stderr[-2000:]
    assert not failed, f"-march={other_march()}: {failed}"

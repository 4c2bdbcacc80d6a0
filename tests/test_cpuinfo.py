"""The first processor's block of a cpuinfo file: what build tags and benchmark records read."""

from __future__ import annotations

from leanbert.cpuinfo import first_cpu


def test_reads_only_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(
        "processor\t: 0\nmodel name\t: Example CPU\ncpu family\t: 6\nmodel\t\t: 207\nflags\t\t: fpu avx512f\n\n"
        "processor\t: 1\nmodel name\t: Other CPU\nflags\t\t: fpu\n\n"
    )
    cpu = first_cpu(path)
    assert cpu["model name"] == "Example CPU"
    assert (cpu["cpu family"], cpu["model"]) == ("6", "207")
    assert cpu["flags"] == "fpu avx512f"


def test_unreadable_file_gives_no_fields(tmp_path):
    assert first_cpu(tmp_path / "missing") == {}

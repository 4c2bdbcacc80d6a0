"""`leanbert demo` checks what it will need before its ten minutes of pretraining."""

from __future__ import annotations

from leanbert.cli import main


def test_missing_glue_folder_stops_the_demo_before_pretraining(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "run"
    assert main(["demo", "--data-dir", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leanbert demo: error: --data-dir ") and "glue" in err and err.count("\n") == 1
    assert not out.exists()

"""The GEMM path PackedLinear takes: measured once per machine, kept on disk, overridable."""

from __future__ import annotations

import json

import pytest
import torch

from leanbert.modeling import linear_backend
from leanbert.modeling.packed_linear import _AVAILABLE, PackedLinear


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No decision made yet in this process, the cache in tmp_path, and `measure` counted."""
    monkeypatch.setenv("LEANBERT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(linear_backend.ENV, "auto")
    calls = []

    def measure():
        calls.append(1)
        return {"packed": False, "packed_seconds": 2.0, "default_seconds": 1.0}

    monkeypatch.setattr(linear_backend, "measure", measure)
    linear_backend.forget()
    yield calls
    linear_backend.forget()


def test_measured_once_then_read_from_the_cache(fresh):
    assert linear_backend.packed_preferred() is False
    path = linear_backend.cache_path()
    assert json.loads(path.read_text())["packed"] is False and len(fresh) == 1
    linear_backend.forget()  # a new process on the same machine
    path.write_text(json.dumps({"packed": True}))
    assert linear_backend.packed_preferred() is True and len(fresh) == 1


def test_the_cache_is_named_by_machine_torch_and_threads(fresh, monkeypatch):
    one = linear_backend.cache_path()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert linear_backend.cache_path() != one and linear_backend.cache_path().parent == one.parent


def test_an_unreadable_cache_is_measured_again_and_replaced(fresh, caplog):
    path = linear_backend.cache_path()
    path.write_text("{not json")
    assert linear_backend.packed_preferred() is False
    assert len(fresh) == 1 and "unreadable" in caplog.text and str(path) in caplog.text
    assert json.loads(path.read_text())["packed"] is False


@pytest.mark.parametrize("setting, expected", [("1", True), ("0", False)])
def test_the_environment_overrides_the_measurement(fresh, monkeypatch, setting, expected):
    monkeypatch.setenv(linear_backend.ENV, setting)
    assert linear_backend.packed_preferred() is expected
    assert not fresh and not linear_backend.cache_path().exists()


def test_a_bad_setting_names_the_variable(fresh, monkeypatch):
    monkeypatch.setenv(linear_backend.ENV, "yes")
    with pytest.raises(ValueError, match="LEANBERT_PACKED_LINEAR='yes'; allowed: 1"):
        linear_backend.packed_preferred()


def test_when_the_default_path_wins_packed_linear_takes_it(fresh):
    layer, x = PackedLinear(16, 8, activation="gelu"), torch.randn(3, 16)
    with torch.inference_mode():
        y = layer(x)
    assert layer._packed._entry is None  # no prepacked copy was made
    torch.testing.assert_close(y, layer.reference_forward(x))


@pytest.mark.skipif(not _AVAILABLE, reason="this torch build has no oneDNN linear op")
def test_measure_times_both_paths():
    record = linear_backend.measure(rows=4, turns=1)
    assert record["packed_seconds"] > 0 and record["default_seconds"] > 0
    assert record["packed"] == (record["packed_seconds"] < (1 - linear_backend.MARGIN) * record["default_seconds"])
    assert record["threads"] == torch.get_num_threads()

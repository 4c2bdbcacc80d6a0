"""The GEMM path PackedLinear takes: measured once per machine and shape, kept on disk, overridable."""

from __future__ import annotations

import json

import pytest
import torch

from leanbert.modeling import linear_backend
from leanbert.modeling.packed_linear import _AVAILABLE, PackedLinear


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No decision made yet in this process, the cache in tmp_path, and `measure` recorded
    (it says the prepacked path wins only for 768 -> 2304)."""
    monkeypatch.setenv("LEANBERT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(linear_backend.ENV, "auto")
    calls = []

    def measure(in_features, out_features, activation):
        calls.append((in_features, out_features, activation))
        wins = (in_features, out_features) == (768, 2304)
        return {"packed": wins, "packed_seconds": 1.0 if wins else 2.0, "default_seconds": 1.5}

    monkeypatch.setattr(linear_backend, "measure", measure)
    linear_backend.forget()
    yield calls
    linear_backend.forget()


def test_each_shape_is_measured_once_then_read_from_the_cache(fresh):
    assert linear_backend.packed_preferred(768, 2304) is True
    assert linear_backend.packed_preferred(768, 3072, "gelu") is False
    assert linear_backend.packed_preferred(768, 2304) is True  # this process remembers
    assert fresh == [(768, 2304, None), (768, 3072, "gelu")]
    assert linear_backend.decisions() == {"768x2304:none": "prepacked", "768x3072:gelu": "default"}
    path = linear_backend.cache_path()
    shapes = json.loads(path.read_text())["shapes"]
    assert shapes["768x2304:none"]["packed"] is True and shapes["768x3072:gelu"]["packed"] is False
    linear_backend.forget()  # a new process on the same machine reads the file
    assert linear_backend.packed_preferred(768, 3072, "gelu") is False and len(fresh) == 2


def test_the_cache_is_named_by_machine_torch_and_threads(fresh, monkeypatch):
    one = linear_backend.cache_path()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert linear_backend.cache_path() != one and linear_backend.cache_path().parent == one.parent


@pytest.mark.parametrize("text", ["{not json", '{"shapes": []}', '{"shapes": {"768x2304:none": {"packed": "yes"}}}'])
def test_an_unreadable_cache_is_measured_again_and_replaced(fresh, caplog, text):
    path = linear_backend.cache_path()
    path.write_text(text)
    assert linear_backend.packed_preferred(768, 2304) is True and len(fresh) == 1
    if text != '{"shapes": {"768x2304:none": {"packed": "yes"}}}':  # a bad entry alone is just measured again
        assert "unreadable" in caplog.text and str(path) in caplog.text
    assert json.loads(path.read_text())["shapes"]["768x2304:none"]["packed"] is True


@pytest.mark.parametrize("setting, expected", [("1", True), ("0", False)])
def test_the_environment_overrides_the_measurement(fresh, monkeypatch, setting, expected):
    monkeypatch.setenv(linear_backend.ENV, setting)
    assert linear_backend.packed_preferred(768, 3072, "gelu") is expected
    assert not fresh and not linear_backend.cache_path().exists()


def test_a_bad_setting_names_the_variable(fresh, monkeypatch):
    monkeypatch.setenv(linear_backend.ENV, "yes")
    with pytest.raises(ValueError, match="LEANBERT_PACKED_LINEAR='yes'; allowed: 1"):
        linear_backend.packed_preferred(8, 8)


def test_packed_linear_takes_the_path_measured_for_its_shape(fresh):
    x = torch.randn(3, 768)
    for out_features, activation, packed in ((3072, "gelu", False), (2304, None, True)):
        layer = PackedLinear(768, out_features, activation=activation)
        with torch.inference_mode():
            y = layer(x)
        assert (layer._packed._entry is not None) == (packed and _AVAILABLE)  # a prepacked copy only where it runs
        torch.testing.assert_close(y, layer.reference_forward(x), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not _AVAILABLE, reason="this torch build has no oneDNN linear op")
@pytest.mark.parametrize("activation", [None, "gelu", "silu"])
def test_measure_times_both_paths(activation):
    record = linear_backend.measure(16, 24, activation, rows=4, turns=1)
    assert record["packed_seconds"] > 0 and record["default_seconds"] > 0
    assert record["packed"] == (record["packed_seconds"] < (1 - linear_backend.MARGIN) * record["default_seconds"])

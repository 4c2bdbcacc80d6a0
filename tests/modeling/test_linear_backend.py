"""The GEMM path PackedLinear takes: measured once per machine, shape and call size, kept on disk,
overridable."""

from __future__ import annotations

import json

import pytest
import torch

from leanbert.modeling import linear_backend
from leanbert.modeling.packed_linear import _AVAILABLE, PackedLinear

QKV = "768x2304:none@1024"
FFN_IN = "768x3072:gelu@1024"


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No decision made yet in this process, the cache in tmp_path, and `measure` recorded
    (it says the prepacked path wins only for 768 -> 2304 and for small calls)."""
    monkeypatch.setenv("LEANBERT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(linear_backend.ENV, "auto")
    calls = []

    def measure(in_features, out_features, activation, rows):
        calls.append((in_features, out_features, activation, rows))
        wins = (in_features, out_features) == (768, 2304) or rows == linear_backend.SMALL
        return {"packed": wins, "packed_seconds": 1.0 if wins else 2.0, "default_seconds": 1.5}

    monkeypatch.setattr(linear_backend, "measure", measure)
    linear_backend.forget()
    yield calls
    linear_backend.forget()


def test_each_shape_is_measured_once_then_read_from_the_cache(fresh):
    assert linear_backend.packed_preferred(768, 2304, None, rows=1024) is True
    assert linear_backend.packed_preferred(768, 3072, "gelu", rows=800) is False
    assert linear_backend.packed_preferred(768, 2304, None, rows=5000) is True  # remembered: same timed size
    assert fresh == [(768, 2304, None, 1024), (768, 3072, "gelu", 1024)]
    assert linear_backend.decisions() == {QKV: "prepacked", FFN_IN: "default"}
    path = linear_backend.cache_path()
    record = json.loads(path.read_text())
    assert record["version"] == linear_backend.VERSION
    assert record["shapes"][QKV]["packed"] is True and record["shapes"][FFN_IN]["packed"] is False
    linear_backend.forget()  # a new process on the same machine reads the file
    assert linear_backend.packed_preferred(768, 3072, "gelu", rows=2048) is False and len(fresh) == 2


def test_small_calls_are_decided_by_their_own_timing(fresh):
    assert linear_backend.packed_preferred(768, 3072, "gelu", rows=1024) is False
    assert linear_backend.packed_preferred(768, 3072, "gelu", rows=40) is True
    assert fresh == [(768, 3072, "gelu", 1024), (768, 3072, "gelu", linear_backend.SMALL)]


def test_a_new_thread_count_is_decided_again(fresh, monkeypatch):
    one = linear_backend.cache_path()
    linear_backend.packed_preferred(768, 3072, "gelu")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert linear_backend.cache_path() != one and linear_backend.cache_path().parent == one.parent
    linear_backend.packed_preferred(768, 3072, "gelu")
    assert len(fresh) == 2 and linear_backend.cache_path().exists()


@pytest.mark.parametrize("text, warned", [
    ("{not json", True),
    ('{"version": 2, "shapes": {"768x2304:none@1024": {"packed": "yes"}}}', False),  # a bad entry: measured again
    ('{"shapes": {"768x2304:none@1024": {"packed": false}}}', False),  # another layout: measured again
])
def test_an_unreadable_cache_is_measured_again_and_replaced(fresh, caplog, text, warned):
    path = linear_backend.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert linear_backend.packed_preferred(768, 2304) is True and len(fresh) == 1
    assert ("unreadable" in caplog.text and str(path) in caplog.text) == warned
    assert json.loads(path.read_text())["shapes"][QKV]["packed"] is True


def test_a_cache_that_cannot_be_written_still_decides(fresh, monkeypatch, caplog):
    def refuse(path, obj):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(linear_backend, "atomic_write_json", refuse)
    assert linear_backend.packed_preferred(768, 2304) is True
    assert len(fresh) == 1 and "could not keep the GEMM choice" in caplog.text


@pytest.mark.parametrize("setting, expected", [("1", True), ("0", False), (" 1 ", True)])
def test_the_environment_overrides_the_measurement(fresh, monkeypatch, setting, expected):
    monkeypatch.setenv(linear_backend.ENV, setting)
    assert linear_backend.packed_preferred(768, 3072, "gelu") is expected
    assert not fresh and not linear_backend.cache_path().exists()


def test_a_bad_setting_names_the_variable(fresh, monkeypatch):
    monkeypatch.setenv(linear_backend.ENV, "yes")
    with pytest.raises(ValueError, match="LEANBERT_PACKED_LINEAR='yes'; allowed: 1"):
        linear_backend.packed_preferred(8, 8)


def test_packed_linear_takes_the_path_measured_for_its_shape(fresh):
    x = torch.randn(300, 768)
    for out_features, activation, packed in ((3072, "gelu", False), (2304, None, True)):
        layer = PackedLinear(768, out_features, activation=activation)
        with torch.inference_mode():
            y = layer(x)
        assert (layer._packed._entry is not None) == (packed and _AVAILABLE)  # a prepacked copy only where it runs
        torch.testing.assert_close(y, layer.reference_forward(x), atol=1e-5, rtol=1e-5)


def test_nothing_is_timed_outside_plain_float32_inference(fresh):
    """Training, autocast and float64 take the reference path without asking for (or timing) a choice."""
    layer, x = PackedLinear(16, 8, activation="gelu"), torch.randn(3, 16)
    layer(x).sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    with torch.no_grad():
        layer.double()(x.double())
    assert not fresh and not linear_backend.decisions()


@pytest.mark.skipif(not _AVAILABLE, reason="this torch build has no oneDNN linear op")
@pytest.mark.parametrize("activation", [None, "gelu", "silu"])
def test_measure_times_both_paths(activation):
    record = linear_backend.measure(16, 24, activation, rows=4, turns=1)
    assert record["packed_seconds"] > 0 and record["default_seconds"] > 0
    assert record["packed"] == (record["packed_seconds"] < (1 - linear_backend.MARGIN) * record["default_seconds"])

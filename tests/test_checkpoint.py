"""Bad checkpoints give one clear error naming the file; pickles load only as weights."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

import leanbert  # noqa: F401
from leanbert import LeanBertConfig, LeanBertModel
from leanbert.checkpoint import CheckpointError, load_folder_weights, load_state_dict
from leanbert.tokenizer import check_tokenizer_fits


def tiny(tmp_path):
    model = LeanBertModel(LeanBertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32))
    model.save_pretrained(tmp_path)
    return model


def test_missing_config(tmp_path):
    tiny(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        LeanBertModel.from_pretrained(tmp_path)


def test_corrupt_config_names_file_and_line(tmp_path):
    tiny(tmp_path)
    (tmp_path / "config.json").write_text('{\n  "model_type": "leanbert",\n  "hidden_size": ,\n}')
    with pytest.raises(CheckpointError, match=r"config.json:3: config.json is not valid JSON"):
        LeanBertModel.from_pretrained(tmp_path)


def test_missing_weights(tmp_path):
    tiny(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found"):
        LeanBertModel.from_pretrained(tmp_path)


def test_corrupt_weights(tmp_path):
    tiny(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt safetensors"):
        LeanBertModel.from_pretrained(tmp_path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_only_checkpoint_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "pytorch_model.bin"
    with open(path, "wb") as handle:
        pickle.dump({"weight": Payload()}, handle, protocol=2)  # torch.save's protocol: no unrelated warning
    with pytest.raises(CheckpointError, match="pytorch_model.bin: refused: not a weights-only pickle"):
        load_state_dict(path)
    assert "this must never run" not in capsys.readouterr().out


def test_pickle_of_plain_tensors_loads_weights_only(tmp_path):
    model = tiny(tmp_path / "src")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    state = load_state_dict(tmp_path / "pytorch_model.bin")
    assert torch.equal(state["embeddings.word_embeddings.weight"], model.embeddings.word_embeddings.weight)


def test_bin_checkpoint_folder_loads(tmp_path):
    model = tiny(tmp_path / "src")
    folder = tmp_path / "bin"
    folder.mkdir()
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    loaded = AutoModel.from_pretrained(folder)
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


def test_empty_or_truncated_bin_is_a_corrupt_checkpoint(tmp_path):
    model = tiny(tmp_path / "src")
    torch.save(model.state_dict(), tmp_path / "whole.bin")
    for name, data in [("empty.bin", b""), ("cut.bin", (tmp_path / "whole.bin").read_bytes()[:300])]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"{name}: (corrupt|refused)"):
            load_state_dict(tmp_path / name)


def test_sharded_bin_folder_loads(tmp_path):
    model = tiny(tmp_path / "src")
    folder = tmp_path / "bin"
    folder.mkdir()
    model.config.save_pretrained(folder)
    state = model.state_dict()
    names = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    for shard, keys in halves.items():
        torch.save({key: state[key] for key in keys}, folder / shard)
    weight_map = {key: shard for shard, keys in halves.items() for key in keys}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = AutoModel.from_pretrained(folder)  # the folder check used to find no weights here
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)
    assert load_folder_weights(folder).keys() == state.keys()


def test_subfolder_is_checked_where_the_model_is(tmp_path):
    model = tiny(tmp_path / "run" / "final")
    loaded = AutoModel.from_pretrained(tmp_path / "run", subfolder="final")
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


def test_tokenizer_vocab_larger_than_model_is_refused(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with pytest.raises(ValueError, match="30522") as err:
        check_tokenizer_fits(tokenizer, 100)
    assert "100" in str(err.value)
    check_tokenizer_fits(tokenizer, 30522)


def test_sharded_folders_load_every_shard(tmp_path):
    tensors = {"a": torch.ones(2), "b": torch.zeros(3), "c": torch.arange(4.0)}
    save_file({"a": tensors["a"], "b": tensors["b"]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"c": tensors["c"]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                  "c": "model-00002-of-00002.safetensors"}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = load_folder_weights(tmp_path)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], v) for k, v in tensors.items())
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="lists shard model-00002-of-00002.safetensors, which is missing"):
        load_folder_weights(tmp_path)
    index.write_text("[]")
    with pytest.raises(CheckpointError, match="not a shard index"):
        load_folder_weights(tmp_path)


def test_single_file_folders_load_as_before(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    assert torch.equal(load_folder_weights(tmp_path)["a"], torch.ones(2))

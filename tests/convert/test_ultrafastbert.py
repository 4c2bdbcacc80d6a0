"""UltraFastBERT / crammedBERT-FFF import reproduces the reference's own outputs (golden fixture)."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForMaskedLM

import leanbert  # noqa: F401
from leanbert.checkpoint import CheckpointError
from leanbert.cli import main
from leanbert.convert.ultrafastbert import convert_ultrafastbert


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "ultrafastbert_crammedbert_fff_tiny"


@pytest.fixture(scope="module")
def converted(fixture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ufb") / "leanbert"
    assert main(["convert", "--from", "ultrafastbert", str(fixture_dir), str(out)]) == 0
    return out


@pytest.mark.parametrize("length", [16, 40])
@pytest.mark.parametrize("unpad", [False, True])
def test_hidden_states_and_mlm_logits_match_the_reference(fixture_dir, converted, length, unpad):
    inputs = load_file(str(fixture_dir / "inputs.safetensors"))
    expected = load_file(str(fixture_dir / "outputs.safetensors"))
    ids, mask = inputs[f"input_ids_L{length}"], inputs[f"attention_mask_L{length}"]
    model = AutoModelForMaskedLM.from_pretrained(converted).eval()
    config = model.config
    assert (config.ffn_type, config.fff_depth, config.fff_trees, config.norm_scheme) == ("fff", 3, 1, "pre")
    with torch.no_grad():
        hidden = model.leanbert(ids, attention_mask=mask, unpad=unpad).last_hidden_state
        logits = model(ids, attention_mask=mask, unpad=unpad).logits
    real = mask.bool()
    torch.testing.assert_close(hidden[real], expected[f"encoder_last_hidden_L{length}"][real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits[real], expected[f"mlm_logits_L{length}"][real], atol=1e-5, rtol=1e-4)


def test_base_model_loads_from_the_converted_mlm_checkpoint(converted):
    model = AutoModel.from_pretrained(converted)
    assert model.config.model_type == "leanbert" and model.pooler is not None


def test_pytorch_model_bin_source(fixture_dir, tmp_path):
    src = tmp_path / "bin_source"
    src.mkdir()
    shutil.copy(fixture_dir / "config.json", src / "config.json")
    torch.save(load_file(str(fixture_dir / "model.safetensors")), src / "pytorch_model.bin")
    model = convert_ultrafastbert(src, tmp_path / "out")
    assert model.config.fff_depth == 3


def copy_with_arch(fixture_dir, tmp_path, edit):
    """The fixture checkpoint in tmp_path/src, with edit(arch) applied to its config."""
    src = tmp_path / "src"
    shutil.copytree(fixture_dir, src)
    config = json.loads((src / "config.json").read_text())
    edit(config["arch"])
    (src / "config.json").chmod(0o644)
    (src / "config.json").write_text(json.dumps(config))
    return src


@pytest.mark.parametrize("field, value, message", [
    ("norm_scheme", "post", "arch.norm_scheme='post'"),
    ("intermed_type", None, "arch.intermed_type='ff'"),  # absent: the reference's dense FF
    ("attention.sequence_op", "normalization", "arch.attention.sequence_op='normalization'"),
    ("attention.skip_output_projection", True, "arch.attention.skip_output_projection=True"),
    ("ffn_layer_frequency", 2, "arch.ffn_layer_frequency=2"),
    ("embedding.vocab_size", None, "no arch.embedding.vocab_size"),
    ("intermed_depth", None, "no arch.intermed_depth"),
])
def test_unsupported_or_incomplete_arch_is_refused_by_name(fixture_dir, tmp_path, field, value, message):
    def edit(arch):
        *path, last = field.split(".")
        section = arch
        for part in path:
            section = section[part]
        if value is None:
            del section[last]
        else:
            section[last] = value

    src = copy_with_arch(fixture_dir, tmp_path, edit)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        convert_ultrafastbert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tied_weights_saved_once_under_the_decoder_name(fixture_dir, converted, tmp_path):
    """safetensors' save_model keeps one name of a tied pair: for crammedBERT, decoder.weight."""
    src = tmp_path / "src"
    shutil.copytree(fixture_dir, src)
    state = load_file(str(fixture_dir / "model.safetensors"))
    state["decoder.weight"] = state.pop("encoder.embedding.word_embedding.weight")
    (src / "model.safetensors").chmod(0o644)
    save_file(state, str(src / "model.safetensors"))
    model = convert_ultrafastbert(src, tmp_path / "out")
    reference = AutoModelForMaskedLM.from_pretrained(converted)
    assert torch.equal(model.leanbert.embeddings.word_embeddings.weight, reference.leanbert.embeddings.word_embeddings.weight)

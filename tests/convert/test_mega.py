"""MEGA import reproduces transformers 4.39's own MegaForMaskedLM outputs (golden fixtures)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM

import leanbert  # noqa: F401
from leanbert.checkpoint import CheckpointError
from leanbert.cli import main
from leanbert.convert.mega import load_mega

FIXTURES = ("mega_chunked", "mega_unchunked")


@pytest.fixture(scope="module")
def converted(shared_dir, tmp_path_factory):
    out = {}
    for name in FIXTURES:
        out[name] = tmp_path_factory.mktemp(name) / "leanbert"
        assert main(["convert", "--from", "mega", str(shared_dir / "fixtures" / name), str(out[name])]) == 0
    return out


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("length", [16, 48])
@pytest.mark.parametrize("unpad", [False, True])
def test_hidden_states_and_mlm_logits_match_the_reference(shared_dir, converted, name, length, unpad):
    fixture = shared_dir / "fixtures" / name
    inputs, expected = load_file(str(fixture / "inputs.safetensors")), load_file(str(fixture / "outputs.safetensors"))
    ids, mask = inputs[f"input_ids_L{length}"], inputs[f"attention_mask_L{length}"]
    model = AutoModelForMaskedLM.from_pretrained(converted[name]).eval()
    assert model.config.attention_type == "mega"
    assert model.config.mega_chunk_size == (16 if name == "mega_chunked" else -1)
    valid = mask.bool()  # (B, L): the reference's values at padded positions carry no meaning
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_hidden_states=True, unpad=unpad)
        last = model.leanbert(ids, attention_mask=mask, unpad=unpad).last_hidden_state
    assert len(out.hidden_states) == 3
    for i, state in enumerate(out.hidden_states):
        torch.testing.assert_close(state[valid], expected[f"hidden_states_{i}_L{length}"][valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last[valid], expected[f"last_hidden_state_L{length}"][valid], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.logits[valid], expected[f"mlm_logits_L{length}"][valid], atol=1e-5, rtol=1e-4)


def test_converted_model_has_the_reference_parameter_count(shared_dir):
    model = load_mega(shared_dir / "fixtures" / "mega_chunked")
    assert sum(p.numel() for p in model.parameters()) == 223_082  # the MANIFEST's unique parameters
    assert model.config.tie_word_embeddings


def _copy(shared_dir, tmp_path, edit_config=None, edit_state=None):
    src = tmp_path / "src"
    shutil.copytree(shared_dir / "fixtures" / "mega_chunked", src)
    if edit_config:
        config = json.loads((src / "config.json").read_text())
        edit_config(config)
        (src / "config.json").write_text(json.dumps(config))
    if edit_state:
        state = load_file(str(src / "model.safetensors"))
        edit_state(state)
        save_file(state, str(src / "model.safetensors"))
    return src


@pytest.mark.parametrize("field, value", [("relative_positional_bias", "rotary"), ("attention_activation", "laplace"),
                                          ("normalize_before_mega", False), ("normalization_type", "batchnorm"),
                                          ("use_normalized_ffn", False), ("is_decoder", True),
                                          ("add_cross_attention", True),
                                          ("model_type", "bert")])
def test_unsupported_choices_are_refused_by_name(shared_dir, tmp_path, field, value):
    src = _copy(shared_dir, tmp_path, edit_config=lambda c: c.__setitem__(field, value))
    with pytest.raises(CheckpointError, match=rf"config\.json.*{field}={value!r}"):
        load_mega(src)


def test_post_norm_checkpoints_map_to_post_norm(shared_dir, tmp_path):
    """The published 16k encoders normalise after each sub-layer (normalize_before_mega/ffn false)."""

    def post(config):
        config.update(normalize_before_mega=False, normalize_before_ffn=False, add_lm_hidden_dense_layer=False,
                      add_token_type_embeddings=True)

    def drop_head(state):
        del state["dense.weight"], state["dense.bias"]
        state["mega.embedding_layer.token_type_embeddings.weight"] = torch.randn(2, 64)

    model = load_mega(_copy(shared_dir, tmp_path, edit_config=post, edit_state=drop_head))
    assert (model.config.norm_scheme, model.config.mlm_head_transform, model.config.type_vocab_size) == ("post", False, 2)
    ids = torch.randint(3, 1000, (2, 20))
    with torch.no_grad():
        hidden = model.leanbert(ids).last_hidden_state
        scalar = model.leanbert.encoder.layers[-1].ffn.norm.scalar
    # the last thing each layer does is its ScaleNorm: every token's RMS is the norm's scalar
    torch.testing.assert_close(hidden.pow(2).mean(-1).sqrt(), scalar.abs().expand(2, 20), atol=1e-4, rtol=1e-4)


def test_a_mega_model_checkpoint_without_head_converts(shared_dir, tmp_path):
    """MegaModel's keys have no "mega." prefix and no MLM head; the encoder still matches the reference."""

    def bare(state):
        for key in list(state):
            tensor = state.pop(key)
            if key.startswith("mega."):
                state[key.removeprefix("mega.")] = tensor
        state["pooler.dense.weight"], state["pooler.dense.bias"] = torch.zeros(64, 64), torch.zeros(64)

    fixture = shared_dir / "fixtures" / "mega_chunked"
    with pytest.warns(UserWarning, match="has no cls.bias, cls.dense.weight, cls.dense.bias; these start untrained"):
        model = load_mega(_copy(shared_dir, tmp_path, edit_state=bare))
    inputs, expected = load_file(str(fixture / "inputs.safetensors")), load_file(str(fixture / "outputs.safetensors"))
    valid = inputs["attention_mask_L48"].bool()
    with torch.no_grad():
        hidden = model.leanbert(inputs["input_ids_L48"], attention_mask=inputs["attention_mask_L48"]).last_hidden_state
    torch.testing.assert_close(hidden[valid], expected["last_hidden_state_L48"][valid], atol=1e-5, rtol=1e-4)


def test_a_bias_span_without_chunking_is_refused(shared_dir, tmp_path):
    """4.39 sizes the relative bias by chunk_size whenever it is >= 0, even with use_chunking=False."""
    src = _copy(shared_dir, tmp_path, edit_config=lambda c: c.__setitem__("use_chunking", False))
    with pytest.raises(CheckpointError, match="chunk_size=16 with use_chunking=False is not supported"):
        load_mega(src)


def test_token_types_default_to_none_as_in_megaconfig(shared_dir, tmp_path):
    model = load_mega(_copy(shared_dir, tmp_path, edit_config=lambda c: c.pop("add_token_type_embeddings")))
    assert model.config.type_vocab_size == 0


def test_a_missing_config_field_is_named(shared_dir, tmp_path):
    src = _copy(shared_dir, tmp_path, edit_config=lambda c: c.pop("hidden_size"))
    with pytest.raises(CheckpointError, match="no field 'hidden_size'"):
        load_mega(src)


def test_an_unexpected_weight_is_named(shared_dir, tmp_path):
    src = _copy(shared_dir, tmp_path, edit_state=lambda s: s.__setitem__("mega.layers.0.mystery", torch.zeros(1)))
    with pytest.raises(CheckpointError, match="mega.layers.0.mystery"):
        load_mega(src)


def test_an_untied_decoder_is_kept(shared_dir, tmp_path):
    def untie(state):
        state["mlm_head.weight"] = state["mlm_head.weight"] + 0.5

    src = _copy(shared_dir, tmp_path, edit_state=untie)
    model = load_mega(src)
    assert not model.config.tie_word_embeddings
    decoder = load_file(str(src / "model.safetensors"))["mlm_head.weight"]
    torch.testing.assert_close(model.cls.decoder.weight, decoder, atol=0, rtol=0)
    hidden = torch.randn(2, 3, 64)
    torch.testing.assert_close(model.cls(hidden, model.leanbert.embeddings),
                               torch.tanh(model.cls.dense(hidden)) @ decoder.T + model.cls.bias)


def test_output_folder_is_not_written_on_failure(shared_dir, tmp_path):
    src = _copy(shared_dir, tmp_path, edit_config=lambda c: c.__setitem__("truncation", "left"))
    out = tmp_path / "out"
    assert main(["convert", "--from", "mega", str(src), str(out)]) != 0
    assert not out.exists()

"""SparseBERT import: the DAM mask and the encoder's outputs equal han-shi/SparseBERT's own (golden fixture)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

import leanbert  # noqa: F401
from leanbert.checkpoint import CheckpointError
from leanbert.cli import main
from leanbert.convert.sparsebert import exponential_sample_to_all_layers, load_sparsebert


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "sparsebert_dam"


@pytest.fixture(scope="module")
def fixture(fixture_dir):
    return load_file(str(fixture_dir / "inputs.safetensors")), load_file(str(fixture_dir / "outputs.safetensors"))


@pytest.fixture(scope="module")
def converted(fixture_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparsebert") / "leanbert"
    assert main(["convert", "--from", "sparsebert", str(fixture_dir), str(out)]) == 0
    return AutoModel.from_pretrained(out).eval()


def test_the_mask_equals_the_reference_given_its_gumbel_draw(converted, fixture):
    inputs, outputs = fixture
    for layer in converted.encoder.layers:
        mask = layer.attention.block.dam(128, inputs["gumbel_exponential_sample_E"])
        torch.testing.assert_close(mask, outputs["dam_mask_add"], atol=0, rtol=0)


@pytest.mark.parametrize("unpad", [False, True])
def test_encoder_outputs_match_the_reference(converted, fixture, unpad):
    inputs, outputs = fixture
    exponential_sample_to_all_layers(converted, inputs["gumbel_exponential_sample_E"])
    try:
        with torch.no_grad():
            out = converted(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            token_type_ids=inputs["token_type_ids"], output_hidden_states=True, unpad=unpad)
    finally:
        exponential_sample_to_all_layers(converted, None)
    valid = inputs["attention_mask"].bool()
    for i in (0, 1):
        torch.testing.assert_close(out.hidden_states[i + 1][valid], outputs[f"encoded_layer_{i}"][valid],
                                   atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.pooler_output, outputs["pooled_output"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("with_dam", [True, False])
def test_one_layer_at_length_64_matches_the_reference(converted, fixture, with_dam):
    """The reference builds only length 128; its mask's top-left 64 x 64 block is the length-64 mask."""
    inputs, outputs = fixture
    attention = converted.encoder.layers[0].attention.block
    from leanbert.modeling.token_layout import TokenLayout

    output, attention.output = attention.output, nn.Identity()  # the reference's self-attention stops before it
    attention.exponential_sample = inputs["gumbel_exponential_sample_E"]
    if not with_dam:
        attention.dam.logits.data[..., 0] += 1e6  # every distance kept
    try:
        with torch.no_grad():
            context = attention(inputs["attn_layer_hidden_states"],
                                TokenLayout(inputs["attn_layer_attention_mask_2d"].bool()))
    finally:
        attention.output, attention.exponential_sample = output, None
        if not with_dam:
            attention.dam.logits.data[..., 0] -= 1e6
    expected = outputs["attn_layer0_context_with_dam" if with_dam else "attn_layer0_context_without_dam"]
    torch.testing.assert_close(context, expected, atol=1e-5, rtol=1e-4)


def test_evaluation_without_a_draw_is_deterministic(converted, fixture):
    inputs, _ = fixture
    with torch.no_grad():
        first = converted(inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        second = converted(inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def _copy(fixture_dir, tmp_path, edit_state):
    src = tmp_path / "src"
    shutil.copytree(fixture_dir, src)
    state = load_file(str(src / "model.safetensors"))
    edit_state(state)
    save_file(state, str(src / "model.safetensors"))
    return src


def test_a_checkpoint_without_dam_logits_is_refused(fixture_dir, tmp_path):
    src = _copy(fixture_dir, tmp_path, lambda state: state.pop("init_alphas"))
    with pytest.raises(CheckpointError, match=r"needs the DAM logits init_alphas of shape \(12, 128, 2\), found none"):
        load_sparsebert(src)


@pytest.mark.parametrize("key, named", [("encoder.layer.1.output.dense.weight", r"missing \['encoder\.layers\.1\.ffn"),
                                        ("encoder.layer.1.attention.self.query.bias", "attention.self.query.bias")])
def test_a_checkpoint_missing_a_weight_is_refused_naming_it(fixture_dir, tmp_path, key, named):
    src = _copy(fixture_dir, tmp_path, lambda state: state.pop(key))
    with pytest.raises(CheckpointError, match=named):
        load_sparsebert(src)


def test_a_config_that_is_not_bert_is_refused(fixture_dir, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fixture_dir, src)
    config = json.loads((src / "config.json").read_text())
    config["num_attention_heads"] = 5  # 48 is not a multiple of 5
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_attention_heads"):
        load_sparsebert(src)

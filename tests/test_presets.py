import json

import pytest

from leanbert.cli import main
from leanbert.presets import PRESETS, count_parameters, preset_config


def test_bert_hash_nano_has_exactly_the_published_count():
    config = preset_config("bert-hash-nano")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (128, 2, 2)
    assert (config.intermediate_size, config.hash_projections) == (512, 16)
    assert count_parameters(config)["total"] == 969_504


@pytest.mark.parametrize("name, published", [("bert-hash-pico", 0.448e6), ("bert-hash-femto", 0.243e6)])
def test_inferred_hash_presets_round_to_the_published_sizes(name, published):
    assert round(count_parameters(preset_config(name))["total"] / 1e3) == round(published / 1e3)
    assert "INFERRED" in PRESETS[name].source


def test_reference_presets():
    assert count_parameters(preset_config("bert-tiny"))["total"] == 4_385_920  # google/bert_uncased_L-2_H-128_A-2
    assert count_parameters(preset_config("bert-base"))["total"] == 109_482_240  # bert-base-uncased BertModel
    bort = preset_config("bort")
    assert (bort.num_hidden_layers, bort.num_attention_heads, bort.hidden_size, bort.intermediate_size,
            bort.vocab_size) == (4, 8, 1024, 768, 50265)


def test_ultrafastbert_preset_is_crammed_bert_with_one_depth_11_tree():
    config = preset_config("ultrafastbert-1x11")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (16, 768, 12)
    assert (config.ffn_type, config.fff_trees, config.fff_depth) == ("fff", 1, 11)
    assert (config.norm_scheme, config.use_bias, config.final_norm) == ("pre", False, True)
    assert config.position_embedding_type == "scaled_sinusoidal" and config.pooler_type == "avg"
    counts = count_parameters(config)
    fff_per_layer = 4095 * 768 + 4095 + 768 * 4095  # linear_in (+bias), linear_out
    attention_per_layer = 4 * 768 * 768 + 4 * 768  # qkv + output (no biases), two LayerNorms
    assert counts["non_embedding"] == 16 * (fff_per_layer + attention_per_layer) + 2 * 768 + 768 * 768 + 768


def test_hash_mlm_head_is_tied_and_factorised():
    config = preset_config("bert-hash-nano")
    counts = count_parameters(config)
    head = counts["with_mlm_head"] - counts["total"]
    # transform (H*H + H + 2H) + vocab bias - pooler (H*H + H): no V x H matrix
    assert head == 128 * 128 + 128 + 2 * 128 + config.vocab_size - (128 * 128 + 128)
    assert head < config.vocab_size * config.hidden_size / 10


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="bert-hash-nano"):
        preset_config("bert-huge")


def test_presets_cli_json(capsys):
    assert main(["presets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) >= {"bert-hash-nano", "bert-hash-pico", "bert-hash-femto", "bert-tiny", "bert-base", "bort"}
    nano = by_name["bert-hash-nano"]
    assert nano["total_params"] == 969_504
    assert nano["non_embedding_params"] == 969_504 - (30522 * 16 + 16 * 128 + 512 * 128 + 2 * 128 + 2 * 128)
    assert nano["layers"] == 2 and nano["hidden"] == 128 and nano["components"] == "hash+full+dense"
    assert nano["source"]

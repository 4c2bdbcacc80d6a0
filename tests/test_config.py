import pytest

import leanbert  # noqa: F401
from leanbert import LeanBertConfig
from transformers import AutoConfig, PreTrainedConfig


def test_is_a_transformers_config_with_model_type():
    config = LeanBertConfig()
    assert isinstance(config, PreTrainedConfig)
    assert config.model_type == "leanbert"
    assert (config.embedding_type, config.attention_type, config.ffn_type) == ("dense", "full", "dense")


def test_round_trips_through_json_and_autoconfig(tmp_path):
    config = LeanBertConfig(hidden_size=64, num_attention_heads=4, embedding_type="hash", hash_projections=8)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LeanBertConfig)
    assert loaded.hash_projections == 8 and loaded.embedding_type == "hash" and loaded.hidden_size == 64


@pytest.mark.parametrize(
    "kwargs, field, allowed",
    [
        (dict(embedding_type="bloom"), "embedding_type", "'dense'"),
        (dict(attention_type="linear"), "attention_type", "'full'"),
        (dict(ffn_type="moe"), "ffn_type", "'dense'"),
        (dict(hidden_size=100, num_attention_heads=12), "hidden_size", "multiple"),
        (dict(hidden_size=0), "hidden_size", "positive"),
        (dict(num_hidden_layers=-1), "num_hidden_layers", "positive"),
        (dict(vocab_size=0), "vocab_size", "positive"),
        (dict(intermediate_size=0), "intermediate_size", "positive"),
        (dict(embedding_type="hash"), "hash_projections", "positive int"),
        (dict(embedding_type="hash", hash_projections=0), "hash_projections", "positive"),
        (dict(norm_scheme="sandwich"), "norm_scheme", "'pre'"),
        (dict(position_embedding_type="rotary"), "position_embedding_type", "'absolute'"),
        (dict(ffn_type="fff", fff_depth=-1), "fff_depth", "0 to 20"),
        (dict(ffn_type="fff", fff_trees=0), "fff_trees", "positive"),
        (dict(embedding_type=["dense"]), "embedding_type", "'dense'"),
        (dict(type_vocab_size=1.5), "type_vocab_size", "int >= 0"),
        (dict(use_bias="no"), "use_bias", "True or False"),
        (dict(final_norm=None), "final_norm", "True or False"),
        (dict(hidden_act="nope"), "hidden_act", "'gelu'"),
        (dict(pad_token_id=40000), "pad_token_id", "vocab_size=30522"),
        (dict(hidden_dropout_prob=None), "hidden_dropout_prob", "0 <= p < 1"),
        (dict(classifier_dropout=1.5), "classifier_dropout", "(or None)"),
        (dict(layer_norm_eps=-1.0), "layer_norm_eps", "positive number"),
        (dict(initializer_range=-1.0), "initializer_range", "non-negative number"),
    ],
)
def test_invalid_configs_name_field_value_and_allowed(kwargs, field, allowed):
    with pytest.raises(ValueError) as err:
        LeanBertConfig(**kwargs)
    message = str(err.value)
    assert field in message
    assert allowed in message
    value = list(kwargs.values())[-1] if field != "hash_projections" else kwargs.get("hash_projections")
    assert repr(value) in message or str(value) in message


def test_fields_given_to_from_pretrained_are_checked_before_a_model_is_built(tmp_path):
    from transformers import AutoModel

    from leanbert import LeanBertModel

    LeanBertModel(LeanBertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32)).save_pretrained(tmp_path)
    # transformers sets these after the config's own check; the model used to fall back to "cls"
    with pytest.raises(ValueError, match=r"LeanBertConfig.pooler_type='max'; allowed"):
        AutoModel.from_pretrained(tmp_path, pooler_type="max")

"""BERT (and Bort, which is a BERT checkpoint) import: outputs equal transformers' on the same inputs."""

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
)

import leanbert  # noqa: F401
from leanbert.cli import main
from leanbert.convert import convert_checkpoint
from leanbert.convert.bert import convert_bert
from leanbert.modeling.model import LeanBertForMaskedLM, LeanBertForSequenceClassification, LeanBertModel


def bert_config(**overrides):
    base = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                max_position_embeddings=64, attn_implementation="sdpa")
    return BertConfig(**{**base, **overrides})


def inputs():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 300, (3, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


CASES = [
    (BertModel, AutoModel, LeanBertModel, ("last_hidden_state", "pooler_output")),
    (BertForMaskedLM, AutoModelForMaskedLM, LeanBertForMaskedLM, ("logits",)),
    (BertForSequenceClassification, AutoModelForSequenceClassification, LeanBertForSequenceClassification, ("logits",)),
]


@pytest.mark.parametrize("bert_class, auto, expected_class, fields", CASES)
@pytest.mark.parametrize("config_overrides", [dict(), dict(type_vocab_size=1, vocab_size=301, hidden_act="gelu_new"),
                                              dict(tie_word_embeddings=False)])
def test_converted_checkpoint_reproduces_transformers(tmp_path, bert_class, auto, expected_class, fields,
                                                      config_overrides):
    torch.manual_seed(0)
    reference = bert_class(bert_config(**config_overrides)).eval()
    with torch.no_grad():  # non-zero biases so that every mapped tensor matters
        for name, p in reference.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    reference.save_pretrained(tmp_path / "bert")
    convert_bert(tmp_path / "bert", tmp_path / "leanbert")
    ours = auto.from_pretrained(tmp_path / "leanbert").eval()
    assert type(ours) is expected_class and ours.config.model_type == "leanbert"
    batch = inputs()
    if config_overrides.get("type_vocab_size") == 1:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    with torch.no_grad():
        expected, got = reference(**batch), ours(**batch)
    for field in fields:
        torch.testing.assert_close(got[field], expected[field], atol=1e-5, rtol=0)


def test_pretraining_checkpoint_imports_as_masked_lm(tmp_path):
    """BertForPreTraining (MLM + NSP, as Google's released checkpoints): the MLM part, without the NSP pooler."""
    torch.manual_seed(0)
    reference = BertForPreTraining(bert_config()).eval()
    reference.save_pretrained(tmp_path / "bert")
    convert_bert(tmp_path / "bert", tmp_path / "leanbert")
    ours = AutoModelForMaskedLM.from_pretrained(tmp_path / "leanbert").eval()
    assert type(ours) is LeanBertForMaskedLM
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs()).logits, reference(**inputs()).prediction_logits, atol=1e-5, rtol=0)


def test_cli_convert_and_python_function_agree(tmp_path):
    torch.manual_seed(0)
    BertForMaskedLM(bert_config()).save_pretrained(tmp_path / "bert")
    assert main(["convert", "--from", "bert", str(tmp_path / "bert"), str(tmp_path / "cli")]) == 0
    convert_checkpoint("bert", str(tmp_path / "bert"), str(tmp_path / "py"))
    a = AutoModelForMaskedLM.from_pretrained(tmp_path / "cli").state_dict()
    b = AutoModelForMaskedLM.from_pretrained(tmp_path / "py").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_non_bert_checkpoint_is_refused(tmp_path):
    from transformers import RobertaConfig, RobertaModel

    RobertaModel(RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(tmp_path / "roberta")
    with pytest.raises(ValueError, match="model_type is 'roberta', expected 'bert'"):
        convert_bert(tmp_path / "roberta", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_missing_weights_is_refused_not_filled_at_random(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    BertForMaskedLM(bert_config()).save_pretrained(tmp_path / "bert")
    weights = tmp_path / "bert" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if ".layer.1." not in k}, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lacks weights .*layer\.1\."):
        convert_bert(tmp_path / "bert", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_causal_bert_is_refused_by_name(tmp_path):
    BertModel(bert_config(is_decoder=True)).save_pretrained(tmp_path / "causal")
    with pytest.raises(ValueError, match="is_decoder=True is not supported"):
        convert_bert(tmp_path / "causal", tmp_path / "out")


def test_a_bert_without_pooler_converts_with_a_warning(tmp_path):
    BertModel(bert_config(), add_pooling_layer=False).save_pretrained(tmp_path / "nopool")
    with pytest.warns(UserWarning, match="no pooler weights"):
        convert_bert(tmp_path / "nopool", tmp_path / "out")

"""Weight decay leaves SparseBERT's mask logits alone, as the reference does, in every leanbert Trainer."""

from transformers import Trainer, TrainingArguments

from leanbert.config import LeanBertConfig
from leanbert.modeling.model import LeanBertForMaskedLM
from leanbert.train.decay_exemptions import DecayExemptionsMixin
from leanbert.train.finetune import InOrderTrainer
from leanbert.train.pretrain import PretrainTrainer


def test_mask_logits_are_exempt_and_weights_are_not(tmp_path):
    config = LeanBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=16, attention_type="sparse")
    model = LeanBertForMaskedLM(config)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")

    class Exempting(DecayExemptionsMixin, Trainer):
        pass

    names = Exempting(model=model, args=args).get_decay_parameter_names(model)
    plain = Trainer(model=model, args=args).get_decay_parameter_names(model)
    assert "leanbert.encoder.layers.0.attention.block.dam.logits" in plain
    assert "leanbert.encoder.layers.0.attention.block.dam.logits" not in names
    assert "leanbert.encoder.layers.0.attention.block.qkv.weight" in names
    assert issubclass(PretrainTrainer, DecayExemptionsMixin) and issubclass(InOrderTrainer, DecayExemptionsMixin)

"""Named architectures with their sources and exact parameter counts.

Counts follow the BERT Hash seed's convention: the base model with its pooler,
`sum(p.numel() for p in LeanBertModel(config).parameters())`. "Non-embedding" excludes the
embedding module (token table, projection, positions, token types, embedding LayerNorm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leanbert.config import LeanBertConfig

_TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
# crammedBERT's backbone (UltraFastBERT's): pre-LN, no dense biases, scaled-sinusoidal positions,
# normalised embedding, final norm, tied decoder without bias or head transform, average-pool head.
CRAMMED_BACKBONE = dict(norm_scheme="pre", use_bias=False, position_embedding_type="scaled_sinusoidal",
                        embedding_norm=True, final_norm=True, mlm_head_transform=False, mlm_decoder_bias=False,
                        pooler_type="avg", type_vocab_size=0)

# MEGA's encoder: word embeddings only, EMA + gated attention (one head) with ScaleNorm and SiLU, no final norm,
# an MLM head without its LayerNorm (transformers' MegaForMaskedLM).
MEGA_BACKBONE = dict(attention_type="mega", num_attention_heads=1, hidden_act="silu", position_embedding_type="none",
                     embedding_norm=False, norm_type="scalenorm", layer_norm_eps=1e-5, pad_token_id=1,
                     mlm_head_act="tanh", mlm_head_norm=False)


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    config: dict = field(default_factory=dict)
    note: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("bert-hash-nano", "BERT Hash seed 000 (neuml/bert-hash-nano): the seed's own example config",
               dict(_TINY, embedding_type="hash", hash_projections=16),
               "969,504 parameters, as published (0.969M)"),
        Preset("bert-hash-pico", "BERT Hash seed 000 (neuml/bert-hash-pico); config INFERRED from the published 0.448M",
               dict(hidden_size=80, num_hidden_layers=2, num_attention_heads=2, intermediate_size=320,
                    embedding_type="hash", hash_projections=8),
               "config not published: hidden 80, 2 layers, k=8 is one config that gives 0.448M"),
        Preset("bert-hash-femto", "BERT Hash seed 000 (neuml/bert-hash-femto); config INFERRED from the published 0.243M",
               dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=192,
                    embedding_type="hash", hash_projections=4),
               "config not published: hidden 64, 2 layers, intermediate 192, k=4 is one config that gives 0.243M"),
        Preset("bert-tiny", "google/bert_uncased_L-2_H-128_A-2 (Turc et al. 2019), the BERT Hash baseline", dict(_TINY)),
        Preset("bert-base", "bert-base-uncased (Devlin et al. 2019)", {}),
        Preset("bort", "Bort seed 002 (amazon/bort; arXiv 2010.10499): RoBERTa vocabulary",
               dict(vocab_size=50265, hidden_size=1024, num_hidden_layers=4, num_attention_heads=8,
                    intermediate_size=768, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1),
               "the seed's table says 56M total / 39M embeddings; a 50,265 x 1024 table alone is 51.5M, "
               "so our exact count is higher (see `leanbert presets`)"),
        Preset("ultrafastbert-1x11", "UltraFastBERT seed 001 (pbelcak/UltraFastBERT-1x11-long; arXiv 2311.10770), "
               "crammedBERT backbone per training/cramming/config/arch/crammed-bert-fff.yaml",
               dict(CRAMMED_BACKBONE, vocab_size=32768, hidden_size=768, num_hidden_layers=16,
                    num_attention_heads=12, max_position_embeddings=128, ffn_type="fff", fff_depth=11,
                    fff_trees=1),
               "1 tree of depth 11 per layer: 4,095 neurons, 12 used per token"),
        Preset("mega-small-16k", "MEGA seed 003 (arXiv 2209.10655), the 16k-context encoder "
               "(mega-encoder-small-16k-v1); fields from the config.json of its fine-tune "
               "BEE-spoke-data/mega-small-embed-synthSTS-16384-v1",
               dict(MEGA_BACKBONE, vocab_size=50304, hidden_size=768, num_hidden_layers=8, intermediate_size=2304,
                    mega_ema_size=32, mega_shared_size=192, mega_value_size=2304, mega_chunk_size=1024,
                    max_position_embeddings=16384, norm_scheme="post", type_vocab_size=2,
                    mlm_head_transform=False),
               "attention inside chunks of 1,024 tokens, the EMA across all 16,384; post-norm"),
    ]
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config(name: str, **overrides) -> LeanBertConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {preset_names()}")
    return LeanBertConfig(**{**PRESETS[name].config, **overrides})


def count_parameters(config: LeanBertConfig) -> dict[str, int]:
    """Exact counts, built on the meta device so even bert-base costs no memory."""
    import torch

    from leanbert.modeling.model import LeanBertForMaskedLM, LeanBertModel

    with torch.device("meta"):
        base = LeanBertModel(config)
        mlm = LeanBertForMaskedLM(config)
    total = sum(p.numel() for p in base.parameters())
    embedding = sum(p.numel() for p in base.embeddings.parameters())
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
        "with_mlm_head": sum(p.numel() for p in mlm.parameters()),
    }


def describe_presets() -> list[dict]:
    rows = []
    for preset in PRESETS.values():
        config = preset_config(preset.name)
        counts = count_parameters(config)
        rows.append({
            "name": preset.name,
            "total_params": counts["total"],
            "non_embedding_params": counts["non_embedding"],
            "with_mlm_head_params": counts["with_mlm_head"],
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "components": f"{config.embedding_type}+{config.attention_type}+{config.ffn_type}",
            "source": preset.source,
            "note": preset.note,
        })
    return rows

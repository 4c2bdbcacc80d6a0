"""config.norm_type: ScaleNorm's formula, and a ScaleNorm model runs the plain residual loop (no fused LayerNorm)."""

import torch

from leanbert.config import LeanBertConfig
from leanbert.modeling.model import LeanBertModel
from leanbert.modeling.norms import ScaleNorm


def test_scale_norm_is_g_x_over_root_mean_square():
    norm = ScaleNorm(1e-5)
    with torch.no_grad():
        norm.scalar.fill_(2.5)
    x = torch.randn(3, 4, 7, dtype=torch.float64)
    expected = 2.5 * x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm.double()(x), expected)


def test_a_scalenorm_encoder_matches_its_plain_loop():
    torch.manual_seed(0)
    config = LeanBertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, norm_type="scalenorm", norm_scheme="pre", final_norm=True)
    model = LeanBertModel(config).eval()
    assert all(isinstance(layer.ffn.norm, ScaleNorm) for layer in model.encoder.layers)
    assert isinstance(model.encoder.final_norm, ScaleNorm)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        fast = model(ids).last_hidden_state
        model.encoder.use_fused_norms = False
        plain = model(ids).last_hidden_state
    torch.testing.assert_close(fast, plain, atol=0, rtol=0)

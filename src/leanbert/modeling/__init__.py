"""leanbert's model code: components (embeddings, attention, ffn), the encoder, heads and models."""

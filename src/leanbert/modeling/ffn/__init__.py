"""Feed-forward sub-layers, selected by `LeanBertConfig.ffn_type`."""

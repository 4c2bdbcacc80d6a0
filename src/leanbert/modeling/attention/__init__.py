"""Token-mixing sub-layers, selected by `LeanBertConfig.attention_type`."""

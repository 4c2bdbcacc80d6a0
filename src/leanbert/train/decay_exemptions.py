"""Weight decay's exemptions: transformers' own (biases, norms), plus the parameters of any module that sets
`no_weight_decay = True`. SparseBERT's mask logits are one: decay would pull every keep/drop decision back
towards the coin toss of the Gumbel noise (the reference puts its `alphas` in the no-decay group)."""

from __future__ import annotations

from torch import nn


def exempt_parameter_names(model: nn.Module) -> set[str]:
    return {f"{module_name}.{name}" if module_name else name
            for module_name, module in model.named_modules() if getattr(module, "no_weight_decay", False)
            for name, _ in module.named_parameters(recurse=False)}


class DecayExemptionsMixin:
    """Mix into a `transformers.Trainer` subclass (before Trainer in the bases)."""

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        exempt = exempt_parameter_names(model)
        return [name for name in super().get_decay_parameter_names(model) if name not in exempt]

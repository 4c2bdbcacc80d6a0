"""The search space Ξ: the `search:` section of a recipe and the candidate architectures it spans.

Bort (seed 002; arXiv 2010.10499) searches Ξ = ⟨D, A, H, I⟩, the depth, attention heads, hidden size and
intermediate size of BERT. Here any LeanBertConfig field can be an axis, so the same search also spans
leanbert's own selectors (`ffn_type`, `fff_depth`, `embedding_type`, `hash_projections`, ...):

    search:
      space:
        num_hidden_layers: [2, 4]
        num_attention_heads: [4, 8]
        hidden_size: [256, 512]
        intermediate_size: [512, 1024]

Ξ is the Cartesian product of the axes applied over the recipe's model (preset + overrides, or config).
A combination LeanBertConfig refuses (hidden 100 with 8 heads) is not a candidate: it is kept, with
LeanBertConfig's reason, in the search's report. Cost: |Ξ| = Π |axis| config validations, no weights.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

# short names for Bort's four axes, as candidates are named in reports and folders: "L4-A8-H1024-I768"
AXIS_LABELS = {"num_hidden_layers": "L", "num_attention_heads": "A", "hidden_size": "H", "intermediate_size": "I"}


@dataclass
class SearchSection:
    """The `search:` section of a search recipe (`leanbert search RECIPE.yaml`).

    space: LeanBertConfig field -> the values to try (a non-empty list); Ξ is their product. Where an axis
        means nothing to a candidate's components (intermediate_size when ffn_type is "fff"), the
        candidates that differ only there are one model: the first is trained, the others are listed.
    error_tolerance: a candidate is eligible when its proxy error e <= (1 + tolerance) * the lowest e.
    params_weight, time_weight: exponents of the cost the choice minimises among eligible candidates,
        (p / p_T)^params_weight * (i / i_T)^time_weight, with T the largest candidate (see `frontier`).
    speed_batch_size, speed_length: the batch inference time i is measured on (None: data.block_size).
    speed_repeats: interleaved timing turns per candidate, each paired with T.
    """

    space: dict[str, list] = field(default_factory=dict)
    error_tolerance: float = 0.02
    params_weight: float = 1.0
    time_weight: float = 1.0
    speed_batch_size: int = 8
    speed_length: int | None = None
    speed_repeats: int = 5


@dataclass(frozen=True)
class Candidate:
    """One point of Ξ: its name, the config fields it sets over the recipe's model, and the config they give."""

    name: str
    overrides: dict
    config: object = field(default=None, compare=False, repr=False)  # LeanBertConfig


def check_search_section(section: SearchSection, path: Path) -> None:
    """Value checks the field types cannot express; raises RecipeError naming the key."""
    from leanbert.train.recipe import RecipeError, check_keys, leanbert_config_fields

    if not section.space:
        raise RecipeError(f"{path}: 'search.space' is required: LeanBertConfig fields, each with a list of values")
    check_keys(section.space, leanbert_config_fields(), "search.space.", path, " (not a LeanBertConfig field)")
    for key, values in section.space.items():
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{path}: 'search.space.{key}'={values!r}; allowed: a non-empty list of values")
        if len(set(map(repr, values))) != len(values):
            raise RecipeError(f"{path}: 'search.space.{key}' lists a value twice: {values}")
    for key in ("error_tolerance", "params_weight", "time_weight"):
        value = getattr(section, key)
        if not (0 <= value < math.inf):
            raise RecipeError(f"{path}: 'search.{key}'={value}; allowed: a finite number >= 0")
    for key in ("speed_batch_size", "speed_repeats"):
        if getattr(section, key) < 1:
            raise RecipeError(f"{path}: 'search.{key}'={getattr(section, key)}; allowed: >= 1")
    if section.speed_length is not None and section.speed_length < 3:
        raise RecipeError(f"{path}: 'search.speed_length'={section.speed_length}; allowed: >= 3 or null")


def candidate_name(overrides: dict) -> str:
    """`L4-A8-H1024-I768` for Bort's axes (in that order), then `field=value` for the others (the space's order)."""
    bort = [f"{label}{overrides[key]}" for key, label in AXIS_LABELS.items() if key in overrides]
    return "-".join(bort + [f"{key}={value}" for key, value in overrides.items() if key not in AXIS_LABELS])


def enumerate_candidates(space: dict[str, list], build_config) -> tuple[list[Candidate], list[dict]]:
    """Ξ's valid candidates in product order, and the refused ones as `{"name", "fields", "reason"}`.

    build_config(overrides) -> LeanBertConfig raises ValueError for a combination the config refuses. A
    combination that differs from an earlier candidate only in fields its components do not read
    (`registry.fields_without_effect`: intermediate_size under ffn_type "fff") is the same model under
    another name, and is refused as such rather than trained twice.
    """
    from leanbert.modeling.registry import fields_without_effect

    keys = list(space)
    named = [key for key in keys if len(space[key]) > 1] or keys  # an axis of one value names no candidate apart
    candidates, refused, models = [], [], {}
    for values in itertools.product(*(space[key] for key in keys)):
        overrides = dict(zip(keys, values))
        name = candidate_name({key: overrides[key] for key in named})
        try:
            config = build_config(overrides)
        except (ValueError, TypeError) as err:
            refused.append({"name": name, "fields": overrides, "reason": str(err)})
            continue
        ignored = fields_without_effect(config) & set(overrides)
        model = tuple((key, repr(value)) for key, value in overrides.items() if key not in ignored)
        if model in models:
            refused.append({"name": name, "fields": overrides, "reason": f"the same model as {models[model]} "
                            f"({', '.join(sorted(ignored))}: not read by its components)"})
            continue
        models[model] = name
        candidates.append(Candidate(name, overrides, config))
    return candidates, refused

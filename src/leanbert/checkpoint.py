"""Reading checkpoint folders safely, with one clear error per problem.

Weights are read with safetensors, or with `torch.load(weights_only=True)` for legacy `.bin`
files; a pickle that needs arbitrary code to load is refused, never executed.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")  # sharded checkpoints


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be used; the message names the file and the problem."""


def local_checkpoint_folder(src: str | os.PathLike) -> Path:
    """src itself when it is a folder; else a hub name, fetched (config, weights, tokenizer files only)."""
    if Path(src).is_dir():
        return Path(src)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(src), allow_patterns=["config.json", "*.safetensors", "*.bin", "*.txt", "*.json",
                                                             "tokenizer*", "special_tokens_map.json"]))


def read_config(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no config.json in checkpoint folder {folder}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}:{err.lineno}: config.json is not valid JSON ({err.msg})") from None


def find_weights(folder: str | os.PathLike) -> Path:
    """The folder's weights file, or the index of its shards (`load_folder_weights` reads either)."""
    folder = Path(folder)
    for name in WEIGHT_FILES + INDEX_FILES:
        if (folder / name).is_file():
            return folder / name
    sharded = sorted(folder.glob("model-*.safetensors"))
    if sharded:
        return sharded[0]
    raise CheckpointError(f"{folder}: no weights found (looked for {', '.join(WEIGHT_FILES + INDEX_FILES)})")


def _shards(index: Path) -> list[Path]:
    """The shard files a `*.index.json` lists, each checked to exist."""
    try:
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
        raise CheckpointError(f"{index}: not a shard index (needs a 'weight_map' of tensor -> file)") from None
    for name in names:
        if not (index.parent / name).is_file():
            raise CheckpointError(f"{index}: lists shard {name}, which is missing")
    return [index.parent / name for name in names]


def load_folder_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder: one weights file, or the shards its index lists."""
    folder = Path(folder)
    for name in INDEX_FILES:
        if (folder / name).is_file():
            state = {}
            for shard in _shards(folder / name):
                state.update(load_state_dict(shard))
            return state
    return load_state_dict(find_weights(folder))


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a weights-only torch pickle."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt safetensors file ({err})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch says the same for a corrupt file and for code in it
        raise CheckpointError(
            f"{path}: refused: not a weights-only pickle (corrupt, or it would run arbitrary code to load). "
            f"Convert it to safetensors in a trusted environment. Detail: {_first_line(err)}"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as err:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors (got {type(state).__name__})")
    return state


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def load_config(name_or_path: str | os.PathLike, label: str = ""):
    """`AutoConfig.from_pretrained`, with a local folder checked first (`check_checkpoint_folder`) and
    any failure one CheckpointError: "{label}{name}: cannot load its config (where it looked): why"."""
    from transformers import AutoConfig

    name = str(name_or_path)
    local = os.path.isdir(name)
    if local:
        check_checkpoint_folder(name)
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        where = "a local folder" if local else "not a local folder, and the hub lookup failed"
        raise CheckpointError(f"{label}{name}: cannot load its config ({where}): {str(err).splitlines()[0]}") from None


def check_checkpoint_folder(folder: str | os.PathLike) -> None:
    """Fail early, naming the file, when a local folder lacks a usable config or weights."""
    read_config(folder)
    weights = find_weights(folder)
    if weights.name in INDEX_FILES:
        _shards(weights)
        return
    if weights.suffix == ".safetensors":
        try:
            with open(weights, "rb") as handle:
                header_size = int.from_bytes(handle.read(8), "little")
                json.loads(handle.read(header_size))
        except (ValueError, OSError, MemoryError):
            raise CheckpointError(f"{weights}: corrupt safetensors file (unreadable header)") from None
    else:
        load_state_dict(weights)

"""Tokenizer loading, the vocab-size check, and WordPiece training.

* :func:`load_tokenizer` loads any Hugging Face tokenizer (hub name or local
  directory) through ``transformers.AutoTokenizer``.
* :func:`check_tokenizer_fits` guards the one mismatch that otherwise shows up
  late as an index error inside the embedding: a tokenizer with more ids than
  the model's ``vocab_size``.
* :func:`train_wordpiece` trains a BERT-style WordPiece vocabulary with the
  ``tokenizers`` library (BERT normaliser and pre-tokeniser, ``##`` continuation
  prefix, ``[PAD] [UNK] [CLS] [SEP] [MASK]`` at ids 0..4) and saves a directory
  that ``AutoTokenizer.from_pretrained`` loads as a fast BERT tokenizer.

Cost: training is one pass over the corpus to count words, then merges over the
word counts: roughly O(corpus characters + distinct words x vocab_size), a few
seconds for a million words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerBase

BERT_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}

# Any one of these marks a directory as holding a tokenizer AutoTokenizer can read.
TOKENIZER_FILE_NAMES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def _looks_like_local_path(name_or_dir: str) -> bool:
    # Hub ids are "name" or "org/name"; anything anchored like a file path is
    # meant to be local, and should fail here rather than as a network lookup.
    return name_or_dir.startswith(("/", "./", "../", "~")) or name_or_dir.count("/") > 1


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory or a hub name via ``AutoTokenizer``.

    Raises ``FileNotFoundError`` naming the path when a local directory does not
    exist or holds none of :data:`TOKENIZER_FILE_NAMES`.
    """
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        if not any((path / file_name).is_file() for file_name in TOKENIZER_FILE_NAMES):
            raise FileNotFoundError(
                f"{path}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILE_NAMES)})"
            )
        return AutoTokenizer.from_pretrained(str(path))
    if path.exists():
        raise FileNotFoundError(f"{path}: is a file; a tokenizer is loaded from its directory")
    if isinstance(name_or_dir, Path) or _looks_like_local_path(str(name_or_dir)):
        raise FileNotFoundError(f"{path}: no such tokenizer directory")
    return AutoTokenizer.from_pretrained(str(name_or_dir))


def check_tokenizer_fits(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    """Raise ``ValueError`` if the tokenizer can emit ids the model has no embedding for."""
    tokenizer_size = len(tokenizer)  # len() counts added tokens; .vocab_size does not
    if tokenizer_size > vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer_size} tokens but the model's vocab_size is {vocab_size}; "
            f"set vocab_size >= {tokenizer_size}"
        )


def train_wordpiece(
    corpus_paths: Iterable[str | Path],
    vocab_size: int,
    out_dir: str | Path,
    lowercase: bool = True,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerBase:
    """Train a BERT WordPiece tokenizer on text files and save it to ``out_dir``.

    ``corpus_paths`` are plain-text files read line by line (blank lines, the
    corpus document separators, contribute nothing). Writes ``tokenizer.json``,
    ``tokenizer_config.json``, ``vocab.txt`` and ``special_tokens_map.json``, and
    returns the saved tokenizer as loaded back by :func:`load_tokenizer`.
    """
    paths = [Path(p) for p in corpus_paths]
    if not paths:
        raise ValueError("train_wordpiece needs at least one corpus file")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such corpus file")
    special_tokens = list(BERT_SPECIAL_TOKENS.values())
    if vocab_size <= len(special_tokens):
        raise ValueError(f"vocab_size {vocab_size} leaves no room beyond the {len(special_tokens)} special tokens")

    wordpiece = Tokenizer(models.WordPiece(unk_token=BERT_SPECIAL_TOKENS["unk_token"]))
    # Uncased BERT strips accents together with lowercasing; cased keeps both.
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    wordpiece.train([str(p) for p in paths], trainer)
    # WordPiece keeps every character it saw (and its ## form) even past vocab_size
    if wordpiece.get_vocab_size() > vocab_size:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for this corpus: its characters alone give "
            f"{wordpiece.get_vocab_size()} tokens; set vocab_size >= {wordpiece.get_vocab_size()}"
        )

    # BertTokenizer adds the [CLS] $A [SEP] / [CLS] $A [SEP] $B [SEP] post-processor
    # and the config that makes AutoTokenizer pick the BERT class on reload.
    tokenizer = BertTokenizer(
        tokenizer_object=wordpiece,
        do_lower_case=lowercase,
        strip_accents=lowercase,
        model_max_length=model_max_length,
        **BERT_SPECIAL_TOKENS,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    # transformers 5 writes only tokenizer.json + tokenizer_config.json; vocab.txt
    # and special_tokens_map.json keep the directory readable by older loaders
    # and by tools that read the vocabulary directly.
    vocab_by_id = sorted(wordpiece.get_vocab().items(), key=lambda item: item[1])
    (out_dir / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab_by_id), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(BERT_SPECIAL_TOKENS, indent=2) + "\n")
    return load_tokenizer(out_dir)

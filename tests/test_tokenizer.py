"""Tests for leanbert.tokenizer: loading, the vocab-size check, WordPiece training."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from leanbert.tokenizer import check_tokenizer_fits, load_tokenizer, train_wordpiece

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BERT_UNCASED = SHARED_DATA / "tokenizers" / "bert-base-uncased"
GUTENBERG = SHARED_DATA / "corpus" / "gutenberg_nltk" / "gutenberg_books.txt"

needs_bert_tokenizer = pytest.mark.skipif(not BERT_UNCASED.is_dir(), reason=f"{BERT_UNCASED} absent")
needs_gutenberg = pytest.mark.skipif(not GUTENBERG.is_file(), reason=f"{GUTENBERG} absent")


@needs_bert_tokenizer
def test_load_tokenizer_local_dir_is_fast_and_does_not_pad():
    tokenizer = load_tokenizer(BERT_UNCASED)
    assert tokenizer.is_fast
    assert len(tokenizer) == 30522
    # tokenizer.json has padding/truncation to 128 built in; the transformers
    # loader must not apply it.
    assert tokenizer("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (0, 103)


def test_load_tokenizer_dir_without_tokenizer_files_names_the_path(tmp_path):
    (tmp_path / "README.md").write_text("not a tokenizer")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)) as error:
        load_tokenizer(tmp_path)
    assert "tokenizer.json" in str(error.value)


def test_load_tokenizer_missing_local_dir_fails_without_a_hub_lookup(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(FileNotFoundError, match="no such tokenizer directory"):
        load_tokenizer(str(missing))


@needs_bert_tokenizer
def test_check_tokenizer_fits_names_both_sizes():
    tokenizer = load_tokenizer(BERT_UNCASED)
    check_tokenizer_fits(tokenizer, 30522)
    check_tokenizer_fits(tokenizer, 32000)
    with pytest.raises(ValueError, match="30522") as error:
        check_tokenizer_fits(tokenizer, 30000)
    assert "30000" in str(error.value)


@pytest.fixture(scope="module")
def small_gutenberg(tmp_path_factory) -> Path:
    if not GUTENBERG.is_file():
        pytest.skip(f"{GUTENBERG} absent")
    path = tmp_path_factory.mktemp("corpus") / "gutenberg_head.txt"
    with GUTENBERG.open(encoding="utf-8") as source:
        path.write_text("".join(line for _, line in zip(range(3000), source)), encoding="utf-8")
    return path


@needs_gutenberg
def test_train_wordpiece_round_trips_through_auto_tokenizer(small_gutenberg, tmp_path):
    out_dir = tmp_path / "wordpiece"
    trained = train_wordpiece([small_gutenberg], vocab_size=2000, out_dir=out_dir)

    for file_name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (out_dir / file_name).is_file(), file_name
    reloaded = AutoTokenizer.from_pretrained(str(out_dir))
    assert reloaded.is_fast
    assert type(reloaded).__name__.startswith("BertTokenizer")
    assert len(reloaded) == len(trained) == 2000
    assert [reloaded.convert_ids_to_tokens(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

    vocab_lines = (out_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_lines == reloaded.convert_ids_to_tokens(list(range(len(reloaded))))

    text = "Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years."
    encoded = reloaded(text)
    ids = encoded["input_ids"]
    assert ids[0] == reloaded.cls_token_id and ids[-1] == reloaded.sep_token_id
    assert reloaded.unk_token_id not in ids  # every character of the text occurs in the corpus
    assert "the" in reloaded.get_vocab()  # a frequent word is one piece
    assert reloaded.decode(ids, skip_special_tokens=True) == (
        "emma woodhouse, handsome, clever, and rich, had lived nearly twenty - one years."
    )
    pair = reloaded("first part", "second part")
    assert pair["input_ids"].count(reloaded.sep_token_id) == 2
    assert set(pair["token_type_ids"]) == {0, 1}


@needs_gutenberg
def test_train_wordpiece_cased_keeps_case(small_gutenberg, tmp_path):
    tokenizer = train_wordpiece([small_gutenberg], vocab_size=1500, out_dir=tmp_path / "cased", lowercase=False)
    tokens = tokenizer.tokenize("Emma")
    assert tokens[0].startswith("E")


def test_train_wordpiece_rejects_missing_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_wordpiece([tmp_path / "nope.txt"], vocab_size=100, out_dir=tmp_path / "out")


def test_train_wordpiece_refuses_a_vocab_smaller_than_the_corpus_alphabet(tmp_path):
    corpus = tmp_path / "chars.txt"
    corpus.write_text("".join(chr(0x4E00 + i) * 3 + " " for i in range(300)) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab_size 100 is too small for this corpus: .* set vocab_size >= \d+"):
        train_wordpiece([corpus], vocab_size=100, out_dir=tmp_path / "tok")
    assert not (tmp_path / "tok").exists()

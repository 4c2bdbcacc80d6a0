"""The command line: subcommands exist, and errors are one line on stderr with exit code 2."""


import pytest
from transformers import AutoTokenizer

from leanbert.cli import main


def test_tokenizer_train_cli_makes_a_loadable_wordpiece_tokenizer(tmp_path, shared_dir):
    lines = (shared_dir / "data" / "corpus" / "gutenberg_nltk" / "gutenberg_books.txt").read_text().splitlines()[:2000]
    corpus = tmp_path / "domain.txt"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "1500", str(out)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert 1000 < len(tokenizer) <= 1500
    ids = tokenizer("Emma Woodhouse, handsome, clever, and rich")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]


def test_convert_error_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nothing"
    missing.mkdir()
    assert main(["convert", "--from", "ultrafastbert", str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_source_format(tmp_path, capsys):
    assert main(["convert", "--from", "gpt2", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "allowed: ['bert', 'mega', 'sparsebert', 'ultrafastbert']" in capsys.readouterr().err


def test_bench_json_prints_one_object_even_when_the_runs_print(tmp_path, capsys, monkeypatch):
    import json

    import leanbert.bench.pretrain_speed as pretrain_speed

    def noisy_run(*args, **kwargs):
        print({"train_runtime": "1.0"})  # what Trainer.train prints at the end of a run
        return {"preset": "bert-tiny", "pretrain_throughput_ratio": 4.2}

    monkeypatch.setattr(pretrain_speed, "run", noisy_run)
    # --default-allocator, so that the record's allocator field is known whatever the C library
    main(["bench", "pretrain", "--json", "--out", str(tmp_path), "--default-allocator"])
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"preset": "bert-tiny", "pretrain_throughput_ratio": 4.2, "allocator": "default"}
    assert "train_runtime" in captured.err
    assert json.loads((tmp_path / "bench_pretrain_bert-tiny.json").read_text())["pretrain_throughput_ratio"] == 4.2


@pytest.mark.parametrize(("argv", "kept"), [
    (["pretrain", "missing.yaml"], True),
    (["distill", "missing.yaml"], True),
    (["glue", "--model", "m", "--tasks", "bogus"], True),
    (["finetune", "--model", "/missing", "--task", "sst2"], True),
    (["pretrain", "missing.yaml", "--default-allocator"], False),
    (["glue", "--model", "m", "--tasks", "bogus", "--default-allocator"], False),
    (["convert", "--from", "gpt2", "src", "out"], False),
])
def test_commands_that_train_keep_freed_memory_unless_told_otherwise(argv, kept, monkeypatch):
    import leanbert.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(argv[0]) or "kept")
    assert main(argv) == 2  # each fails on its bad input, after the allocator was set up
    assert calls == ([argv[0]] if kept else [])


def test_a_missing_bert_source_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["convert", "--from", "bert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope: cannot load its config (not a local folder" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("what", "named", "missing"), [
    ("pretrain", "env", "no tokenizers/bert-base-uncased folder"),
    ("pretrain", "flag", "no tokenizers/bert-base-uncased folder"),
    ("model", "env", "no glue/sst2/validation.jsonl"),
    ("model", "flag", "no glue/sst2/validation.jsonl"),
])
def test_bench_refuses_a_named_data_folder_without_its_data(tmp_path, capsys, monkeypatch, what, named, missing):
    import leanbert.bench.model_speed as model_speed

    def no_timing(*args, **kwargs):
        raise AssertionError("timed before the data was checked")

    monkeypatch.setattr(model_speed, "_models", no_timing)
    argv = ["bench", what, "--json", "--out", str(tmp_path / "out"), "--default-allocator"]
    if named == "env":
        monkeypatch.setenv("LEANBERT_DATA", str(tmp_path))
    else:
        argv += ["--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and missing in err and str(tmp_path) in err
    assert not (tmp_path / "out").exists()


def test_bench_pretrain_refuses_a_named_data_folder_without_its_corpus(tmp_path, shared_dir, capsys):
    import shutil

    shutil.copytree(shared_dir / "data" / "tokenizers" / "bert-base-uncased", tmp_path / "tokenizers" / "bert-base-uncased")
    assert main(["bench", "pretrain", "--data-dir", str(tmp_path), "--default-allocator"]) == 2
    assert "no corpus/gutenberg_nltk folder" in capsys.readouterr().err

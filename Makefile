# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench bench-quality clean

install: $(STAMP)

# torch first: an unpinned torch from the registry is a multi-GB CUDA build, the pinned one is a local CPU wheel.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

test: install
	$(PY) -m pytest -x

demo: install
	$(VENV)/bin/leanbert demo

bench: install
	$(VENV)/bin/leanbert bench model --out benchmarks/results
	$(VENV)/bin/leanbert bench pretrain --out benchmarks/results
	$(VENV)/bin/leanbert bench pretrain --preset bert-tiny --out benchmarks/results
	$(VENV)/bin/leanbert bench fff --out benchmarks/results
	$(VENV)/bin/leanbert bench attention --lengths 1024,2048,4096,8192 --repeats 7 --out benchmarks/results

# the 2-hour CPU quality recipe (pretraining + GLUE); resumable
bench-quality: install
	$(PY) benchmarks/quality_nano/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

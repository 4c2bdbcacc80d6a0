# Set-up and entry points. `make demo` and `make test` do all the set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench bench-quality bench-search clean

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

# Bort's subarchitecture search over 16 candidates (about 40 min; resumes an interrupted run), its report copied
# to benchmarks/results/bort_search
SEARCH_RUN := runs/bort-search
bench-search: install
	$(VENV)/bin/leanbert search recipes/bort-search.yaml --output-dir $(SEARCH_RUN) $$(test -f $(SEARCH_RUN)/search_inputs.json && echo --resume)
	mkdir -p benchmarks/results/bort_search
	cp $(SEARCH_RUN)/search.json $(SEARCH_RUN)/search.md $(SEARCH_RUN)/pareto.png $(SEARCH_RUN)/costs.json benchmarks/results/bort_search/

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

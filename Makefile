# Two entry points: `make demo` (train + evaluate on shipped data) and `make test`.
# Both create .venv, install a CPU torch where no GPU is present (a plain `torch`
# requirement would pull a multi-GB CUDA build), keep it pinned with a constraints
# file, then install contrastkit with its extras.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_CPU_VERSION ?= 2.13.0
EXTRAS_RUN := data,metrics
EXTRAS_TEST := dev,data,metrics,text,video,sweep,track,scale,bench,lightning

.PHONY: demo test lint bench clean venv doctor-matrix

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first: the CPU build on machines without an NVIDIA GPU.
$(VENV)/.torch: | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/pip install -q torch; \
	else \
		$(BIN)/pip install -q torch==$(TORCH_CPU_VERSION); \
	fi
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	@touch $@

$(VENV)/.run: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[$(EXTRAS_RUN)]"
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -c $(VENV)/constraints.txt -e ".[$(EXTRAS_TEST)]"
	@touch $@ $(VENV)/.run

venv: $(VENV)/.run

demo: $(VENV)/.run
	$(BIN)/contrastkit demo

test: $(VENV)/.test
	$(BIN)/python -m pytest -q -m "not matrix"

# The doctor's generality matrix and false-positive sweep: every failure class on two or
# more data families, every shipped example at 3 seeds (~30 min on 2 cores).
doctor-matrix: $(VENV)/.test
	$(BIN)/python -m pytest -q -m matrix

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src/contrastkit

bench: $(VENV)/.test
	$(BIN)/pip install -q -c $(VENV)/constraints.txt --no-deps open-clip-torch
	$(BIN)/python bench/losses.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/logging_demo.py
	$(BIN)/python bench/doctor.py
	$(BIN)/python bench/lit_cache.py
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) runs .pytest_cache

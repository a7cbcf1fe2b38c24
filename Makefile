# Two commands do all the set-up: `make demo` and `make test` (each creates .venv if missing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH_CPU_VERSION ?= 2.13.0
OUT    ?= outputs/demo
MODEL  ?= demo
export TOKENIZERS_PARALLELISM ?= false
# the tests never touch the hub; demo and lab may (MODEL=roberta-base downloads it once)

.PHONY: setup browser demo test test-all lab bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@# torch first: a CPU build where there is no NVIDIA GPU, so pip never pulls the CUDA wheel (GBs)
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q torch; \
	  else $(PIP) install -q --retries 1 --timeout 15 --extra-index-url https://download.pytorch.org/whl/cpu "torch==$(TORCH_CPU_VERSION)"; fi; fi
	$(PIP) install -q -e ".[dev]"
	@touch $@

# static figure export (PNG/SVG/PDF) needs a Chrome/Chromium: find one, or provision one where
# the machine allows (kaleido's download, or apt as root); one line says what happened, never fails
browser: $(VENV)/.installed
	@$(PY) -m workbench.browser

setup: $(VENV)/.installed browser

demo: setup
	$(PY) -m workbench demo --model $(MODEL) --out $(OUT)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=15

test-all: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "slow or not slow"

lab: setup
	$(PY) -m workbench lab

bench: setup
	$(PY) -m workbench bench

clean:
	rm -rf $(VENV) outputs .pytest_cache

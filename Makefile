# externalip: every set-up step a fresh Linux machine needs is in `make deps`;
# `make test` and `make lab` run it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := iproute2 bird2 procps iputils-ping curl nftables libnftables1 iptables \
	podman runc mmdebstrap
PYTEST_ARGS ?=

.PHONY: help deps venv lock image k8s-binaries helm lint test unit integration lab lab-down bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: venv k8s-binaries helm ## everything a fresh machine needs: apt packages, virtualenv, Kubernetes binaries, helm, the image
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "[deps] installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@command -v go >/dev/null || { echo "[deps] Go >= 1.26 is required to build the Kubernetes binaries"; exit 1; }
	@bash tools/image/build.sh >/dev/null

venv: $(BIN)/externalip ## the Python virtualenv with the package and its dev tools

$(BIN)/externalip: pyproject.toml lab/pyproject.toml requirements.lock
	@echo "[deps] creating $(VENV) and installing the package"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@# the runtime dependencies exactly as the image has them (hash-checked)
	@$(BIN)/pip install -q --require-hashes --no-deps -r requirements.lock
	@$(BIN)/pip install -q -e '.[dev]' -e ./lab
	@touch $@

lock: venv ## re-resolve requirements.lock (hashed runtime dependencies) within pyproject.toml's bounds
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --upgrade --python-version 3.11 \
	  --no-header --quiet -o requirements.lock

image: ## build the container image with podman (base rootfs cached in ~/.cache/externalip/image)
	@bash tools/image/build.sh

helm: ## build helm from Go modules (cached in ~/.cache/externalip), for the chart's tests
	@bash tools/build-helm.sh >/dev/null

k8s-binaries: ## build etcd, kube-apiserver, kubectl and kube-proxy from Go modules (cached in ~/.cache/externalip)
	@bash tools/build-k8s.sh >/dev/null

lint: venv ## ruff, mypy (strict), the import layers (.importlinter) and kube-score on the chart
	$(BIN)/ruff check src lab/src tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports
	@bash tools/lint-chart.sh

test: deps lint ## lint, then unit, integration and end-to-end tests (root needed for network namespaces)
	$(BIN)/pytest -p no:cacheprovider -ra --durations=15 $(PYTEST_ARGS)

unit: venv ## only the fast pure tests
	$(BIN)/pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lab: deps ## run the lab: control plane, nodes in network namespaces, a Service reachable from a client
	$(BIN)/externalip lab up

lab-down: venv ## remove everything the lab created
	$(BIN)/externalip lab down

BENCH_OUT ?= .bench
bench: deps ## run the benchmarks (not part of CI); figures go to docs/benchmarks.md, plots next to it
	@$(BIN)/pip install -q -e '.[bench]'
	@mkdir -p $(BENCH_OUT)
	@for b in bench/*.py; do case $$b in */_*|*/plots.py|*/physical_limit.py|*/side_by_side.py) continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done
	$(BIN)/python bench/physical_limit.py 20 --json $(BENCH_OUT)/limit.json
	$(BIN)/python bench/side_by_side.py --scale 100 1000 10000 --json $(BENCH_OUT)/side.json
	$(BIN)/python bench/plots.py --out docs --limit $(BENCH_OUT)/limit.json --side $(BENCH_OUT)/side.json

clean: ## remove the virtualenv and caches in the checkout (not the Kubernetes binaries)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache src/*.egg-info lab/src/*.egg-info

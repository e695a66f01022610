# The two set-up commands of the README: `make demo` and `make test` (Debian, as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test test-unit test-root test-lab lab-setup node-setup lint bench

bootstrap:
	@sh scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

lab-setup: bootstrap
	@$(VENV)/bin/sriovkit lab setup

# The node tier's kubelet (built from Debian's kubernetes source package), containerd, pause image.
# Outside CI a machine that cannot have it (not Debian 12) skips the node tier, saying why.
node-setup: bootstrap
	@$(VENV)/bin/sriovkit node setup || { [ -z "$$CI" ] && echo "node: the node tier will be skipped"; }

# Every tier: unit, integration (root), runtime, node (real kubelet), lab (QEMU guest), then lint
# and types.
test: bootstrap lab-setup node-setup
	@bash scripts/test.sh

test-unit: bootstrap
	@$(PY) -m pytest -m "not root and not lab" -q

lint: bootstrap
	@$(VENV)/bin/ruff check src tests benchmarks
	@$(VENV)/bin/mypy

bench: bootstrap
	@$(PY) benchmarks/inventory.py

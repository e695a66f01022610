# The two set-up commands of the README: `make demo` and `make test` (Debian, as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The node agent image: its name and tag live in deploy/IMAGE, read by everything that needs it.
IMAGE := $(shell cat deploy/IMAGE)

.PHONY: bootstrap demo test test-unit test-root test-lab lab-setup image image-setup node-setup \
	lint bench

bootstrap:
	@sh scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

lab-setup: bootstrap
	@$(VENV)/bin/sriovkit lab setup

# The agent image ($(IMAGE)) with podman, no registry: scripts/build-image.sh (cached in
# /var/cache/sriovkit-image; ~0.5 s when nothing changed). IMAGE_ARCHIVE=FILE also writes it as
# an OCI archive (`ctr -n k8s.io images import FILE`).
image: bootstrap
	@bash scripts/build-image.sh $(if $(IMAGE_ARCHIVE),--archive $(IMAGE_ARCHIVE))

# What the image tier needs before pytest starts: the image, built and cached.
image-setup: image

# The node tier's kubelet (built from Debian's kubernetes source package), containerd, pause image.
# Outside CI a machine that cannot have it (not Debian 12) skips the node tier, saying why.
node-setup: bootstrap
	@$(VENV)/bin/sriovkit node setup || { [ -z "$$CI" ] && echo "node: the node tier will be skipped"; }

# Every tier: unit, integration (root), runtime and image (podman), node (a real kubelet running
# the agent image), lab (QEMU guest), then lint and types.
test: bootstrap lab-setup image-setup node-setup
	@bash scripts/test.sh

test-unit: bootstrap
	@$(PY) -m pytest -m "not root and not lab" -q

lint: bootstrap
	@$(VENV)/bin/ruff check src tests benchmarks
	@$(VENV)/bin/mypy

bench: bootstrap
	@$(PY) benchmarks/inventory.py

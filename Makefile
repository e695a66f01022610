# The two set-up commands of the README: `make demo` and `make test` (Debian, as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The node agent image: its name and tag live in deploy/IMAGE, read by everything that needs it.
IMAGE := $(shell cat deploy/IMAGE)

.PHONY: bootstrap demo test test-unit test-root test-lab lab-setup image image-setup lint bench

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

# Every tier: unit, integration (root), runtime and image (podman), lab (QEMU guest), then lint
# and types.
test: bootstrap lab-setup image-setup
	@bash scripts/test.sh

test-unit: bootstrap
	@$(PY) -m pytest -m "not root and not lab" -q

lint: bootstrap
	@$(VENV)/bin/ruff check src tests benchmarks
	@$(VENV)/bin/mypy

bench: bootstrap
	@$(PY) benchmarks/inventory.py

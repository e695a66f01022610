"""The emulated SR-IOV lab: a QEMU guest with a dual-port Intel 82576 (`igb`) and real VFs.

- `setup.ensure_lab(cache)`: QEMU with igb, a Debian guest kernel + modules, busybox, the initramfs
  (cached; `sriovkit lab setup`);
- `runner.run_in_guest(assets, command, share, ...)`: boot one guest running the host's own
  userspace, run one command, stream its output, return how it ended (`sriovkit lab run`);
- the pytest bridge (tests marked `lab` run in one guest per pytest session) lives with the
  tests, in `tests/lab/labbridge.py`: the shipped package does not import pytest.
"""

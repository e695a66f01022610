"""The node tier's harness: a real kubelet (built from Debian's source package) and containerd.

- `setup.ensure_node(cache)`: containerd, runc, strace and the CNI plugins from Debian's archive;
  the kubelet and the pause binary built from Debian 12's `kubernetes` source package, and the
  pause image as an OCI archive (cached; `sriovkit node setup`, run by `make test`);
- `oci`: single-layer OCI image archives for `ctr images import` (no registry);
- running the daemons for a test session lives with the tests, in `tests/node/nodekit.py`.
"""

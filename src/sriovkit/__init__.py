"""sriovkit: an SR-IOV networking toolkit for Linux hosts and Kubernetes.

Importing the package is cheap on purpose: nothing heavy (pyroute2, grpc, rich) is imported here.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

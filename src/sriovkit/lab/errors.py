"""Errors of the lab harness: `LabUnavailable`, defined in `sriovkit.errors`, kept here by name."""

from __future__ import annotations

from sriovkit.errors import LabUnavailable

__all__ = ["LabUnavailable"]

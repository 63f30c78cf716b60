"""The package version, kept in one place (read by the build and recorded in every run)."""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0.dev0"

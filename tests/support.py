"""Shared test helpers: skip for a missing prerequisite, except in CI.

TESTING.md: on a developer's laptop a test that needs root or a tool skips
with a precise reason; in CI (CI=true) nothing may be skipped for that, so the
same check fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (laptop) or fail (CI) because a prerequisite is absent."""
    if in_ci():
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        missing("needs root (network namespaces, raw sockets)")


def require_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        missing(f"needs {name!r} on PATH (scripts/setup installs it)")
        raise AssertionError("unreachable")
    return path

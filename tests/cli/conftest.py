"""Fixtures for the `kvca` command line: the CLI in-process against the emulator, with kvca's
clock following the emulator's, and a CA made the way `step ca init` does (clifixtures.py)."""

from __future__ import annotations

from clifixtures import cli_env, corp, kvca, step_ca  # noqa: F401 (fixtures)

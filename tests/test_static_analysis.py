"""The static checks, run with the suite (so ./runtests, and CI through it, runs them): ruff
over the repository, and mypy over the package with pyproject.toml's [tool.mypy] (strict on
the server core: django_daphne.server, .protocols and .asgi; mypy's defaults on the Django
layer).  Each runs the real tool from the project root with this interpreter; mypy keeps its
cache in .mypy_cache, so a run after the first takes a second or so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def check_passes(*args: str) -> None:
    result = run_tool(*args)
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` exited with {result.returncode}:\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)


def test_ruff_passes():
    check_passes("ruff", "check", ".")


def test_mypy_passes():
    check_passes("mypy", "django_daphne")

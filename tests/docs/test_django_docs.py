"""README.rst, the entry page: its two first commands work as CI runs them, it stays short,
its links lead to pages that exist, and it renders as valid reStructuredText.  The rest of
the documentation (docs/) is tests/docs/test_docs.py's."""

from __future__ import annotations

import io
import re
from pathlib import Path

import docutils.core

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.rst").read_text()


def test_readme_starts_with_the_two_commands():
    body = README.split("\n", 3)[3]  # after the title and its underline
    block = re.match(r"\s*\.\. code-block:: sh\n\n((?:   .*\n)+)", body)
    assert block, "README must start with a code block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["./runexample", "./runtests"]
    for script in ("runexample", "runtests"):
        path = ROOT / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"


def test_ci_runs_exactly_the_readme_test_command():
    lines = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[-1] == "exec ./runtests"


def test_runtests_installs_the_system_packages_and_extras_the_tests_use():
    script = (ROOT / "runtests").read_text()
    for package in ("redis-server", "chromium", "chromium-driver", "wrk", "nghttp2-client",
                    "curl", "python3-venv", "prometheus"):
        assert f"missing+=({package})" in script
    assert '-e ".[channels,redis,dev]"' in script
    assert 'python -m pytest "$@"' in script


def test_readme_is_an_entry_page():
    assert README.count("\n") <= 300, "README is the entry page: move the details to docs/"


def test_readme_links_lead_to_files_that_exist():
    targets = re.findall(r"<([\w./-]+\.(?:rst|md))>`_", README)
    assert len(targets) >= 15
    for target in targets:
        assert (ROOT / target).is_file(), target


def test_readme_is_valid_restructuredtext():
    warnings = io.StringIO()
    docutils.core.publish_string(
        README, writer="null",
        settings_overrides={"warning_stream": warnings, "report_level": 1, "halt_level": 5},
    )
    assert warnings.getvalue() == ""

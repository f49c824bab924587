"""README.rst tells the truth about the code: its two first commands, every option, every
system check, and it renders as valid reStructuredText."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import docutils.core

from django_daphne.conf import DJANGO_OPTIONS
from django_daphne.server.config import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()
sys.path.insert(0, str(ROOT / "tools"))

import readme_options  # noqa: E402


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


def test_option_tables_are_generated_from_the_code():
    assert readme_options.render() in README, (
        "README's option tables differ from config.OPTIONS: run python tools/readme_options.py"
    )


def test_every_option_flag_and_setting_is_documented():
    for option in (*OPTIONS, *DJANGO_OPTIONS):
        assert f"``{option.setting}``" in README, option.setting
        for flag in option.flags:
            assert f"``{flag}" in README, flag


def test_every_system_check_id_is_documented():
    source = (ROOT / "django_daphne" / "checks.py").read_text()
    ids = set(re.findall(r'id="(django_daphne\.[EW]\d{3})"', source))
    assert len(ids) >= 8
    for check_id in ids:
        assert f"``{check_id}``" in README, check_id


def test_daphne_usage_examples_are_there():
    for example in (
        "daphne myproject.asgi:application",
        "daphne -b 0.0.0.0 -p 8001 myproject.asgi:application",
        "daphne -u /tmp/daphne.sock myproject.asgi:application",
        "daphne --fd 5 myproject.asgi:application",
        "daphne -e ssl:443:privateKey=key.pem:certKey=crt.pem myproject.asgi:application",
    ):
        assert example in README


def test_readme_is_valid_restructuredtext():
    warnings = io.StringIO()
    docutils.core.publish_string(
        README, writer="null",
        settings_overrides={"warning_stream": warnings, "report_level": 1, "halt_level": 5},
    )
    assert warnings.getvalue() == ""

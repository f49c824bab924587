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


PACKAGE = ROOT / "django_daphne"
CORE = ("server", "protocols", "asgi")
# the wire protocols: none imports another (the connection, which knows them all, does)
WIRES = {
    "http1": ("protocols.http1", "protocols.http1_parser"),
    "http2": ("protocols.http2",),
    "websocket": ("protocols.websocket", "protocols.websocket_framing"),
}


def runtime_imports(path: Path) -> set[str]:
    """The django_daphne modules (dotted, relative to the package) and the top-level
    packages a module imports when it runs: ``if TYPE_CHECKING:`` blocks are left out."""
    import ast

    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                    found.add("django_daphne." + target if target else "django_daphne")
                    found.update(f"django_daphne.{target}.{a.name}".replace("..", ".")
                                 for a in child.names)
                else:
                    found.add(child.module or "")
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def core_modules() -> list[Path]:
    return sorted(p for layer in CORE for p in (PACKAGE / layer).rglob("*.py"))


def test_the_server_core_never_imports_django():
    for path in core_modules():
        imported = runtime_imports(path)
        assert not any(name == "django" or name.startswith("django.") for name in imported), (
            f"{path.relative_to(ROOT)} imports Django: the server core must run any ASGI "
            "application without it")


def test_no_wire_protocol_imports_another():
    for path in core_modules():
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        mine = [wire for wire, prefixes in WIRES.items()
                if any(module == p or module.startswith(p + ".") for p in prefixes)]
        if not mine:
            continue
        for name in runtime_imports(path):
            for wire, prefixes in WIRES.items():
                if wire in mine:
                    continue
                for prefix in prefixes:
                    full = "django_daphne." + prefix
                    assert not (name == full or name.startswith(full + ".")), (
                        f"{path.relative_to(ROOT)} ({mine[0]}) imports {name} ({wire})")

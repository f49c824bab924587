"""The static checks, run with the suite (so ./runtests, and CI through it, runs them): ruff
over the repository, and mypy over the package with pyproject.toml's [tool.mypy] (strict on
everything below the Django layer: django_daphne.core, .asgi, .protocols and .server;
mypy's defaults on the Django layer).  Each runs the real tool from the project root with
this interpreter; mypy keeps its cache in .mypy_cache, so a run after the first takes a
second or so.

Then the architecture, read from the source with ``ast``: the layers (core < asgi <
protocols < server < the Django layer) and their order, no import circle at all, no wire
protocol importing another, no module over 600 lines, mypy strict below the Django layer.
Every import counts: at the top, under ``if TYPE_CHECKING:`` and inside functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
# the layers, lowest first: a module imports only from its own layer and those below it.
# A module belongs to the first layer with a prefix it is (or is under); the package's own
# __init__ (the version) is core.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("django_daphne.core", "django_daphne")),
    ("asgi", ("django_daphne.asgi",)),
    ("protocols", ("django_daphne.protocols",)),
    ("server", ("django_daphne.server", "django_daphne.__main__")),
    ("django", ("django_daphne.apps", "django_daphne.checks", "django_daphne.conf",
                "django_daphne.daphne_compat", "django_daphne.management",
                "django_daphne.staticfiles", "django_daphne.testing")),
)
BELOW_DJANGO = ("core", "asgi", "protocols", "server")
# the wire protocols: none imports another (the connection, which knows them all, does)
WIRES = {
    "http1": ("django_daphne.protocols.http1", "django_daphne.protocols.http1_parser"),
    "http2": ("django_daphne.protocols.http2",),
    "websocket": ("django_daphne.protocols.websocket",
                  "django_daphne.protocols.websocket_framing"),
}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = package_modules()


def resolve(name: str) -> str | None:
    """The django_daphne module that an imported dotted name is, or is in (a name imported
    from a module resolves to the module); None outside the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> list[tuple[str, int, str]]:
    """(imported name, line, where) for every import of a module, dotted and absolute;
    ``where`` is "top", "TYPE_CHECKING" or "function" (inside a function or a class's
    method).  Relative imports are made absolute; ``from package import name`` gives
    ``package.name`` (a submodule, or a name resolve() takes back to the package)."""
    import ast

    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = "TYPE_CHECKING" if where == "top" else where
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), inner)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), where)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, where) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.extend((f"{target}.{alias.name}", child.lineno, where)
                             for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text()), "top")
    return found


def internal_imports(path: Path) -> list[tuple[str, int, str]]:
    """imports(), only those of django_daphne's own modules, resolved to the module."""
    me = module_name(path)
    found = []
    for name, line, where in imports(path):
        target = resolve(name) if name.split(".")[0] == "django_daphne" else None
        if target is not None and target != me:
            found.append((target, line, where))
    return found


def layer_of(module: str) -> str | None:
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or (prefix != "django_daphne" and module.startswith(prefix + ".")):
                return layer
    return None


def layer_modules(*layers: str) -> list[Path]:
    return [path for module, path in MODULES.items() if layer_of(module) in layers]


def test_every_module_has_a_layer():
    orphans = [module for module in MODULES if layer_of(module) is None]
    assert not orphans, f"modules in no layer (add them to LAYERS): {orphans}"


def test_no_layer_imports_a_higher_one():
    rank = {layer: index for index, (layer, _) in enumerate(LAYERS)}
    wrong = []
    for module, path in MODULES.items():
        mine = layer_of(module)
        for target, line, where in internal_imports(path):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and rank[theirs] > rank[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} "
                             f"({theirs}, {where})")
    assert not wrong, ("a lower layer imports a higher one (declare a typing.Protocol in the "
                       "lower layer instead):\n" + "\n".join(wrong))


def test_no_import_circle():
    """No circle among django_daphne's modules, TYPE_CHECKING and function-local imports
    included; the first circle found is named, module by module."""
    graph = {module: sorted({target for target, _, _ in internal_imports(path)})
             for module, path in MODULES.items()}
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def walk(module: str) -> list[str] | None:
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target in on_stack:
                return stack[stack.index(target):] + [target]
            if target not in done:
                circle = walk(target)
                if circle:
                    return circle
        stack.pop()
        on_stack.discard(module)
        done.add(module)
        return None

    for module in graph:
        if module not in done:
            circle = walk(module)
            assert circle is None, "an import circle: " + " -> ".join(circle)


def test_below_django_never_imports_django():
    for path in layer_modules(*BELOW_DJANGO):
        imported = [name for name, _, _ in imports(path)]
        assert not any(name == "django" or name.startswith("django.") for name in imported), (
            f"{path.relative_to(ROOT)} imports Django: the server must run any ASGI "
            "application without it")


def test_no_wire_protocol_imports_another():
    def wire_of(module: str) -> str | None:
        return next((wire for wire, prefixes in WIRES.items()
                     if any(module == p or module.startswith(p + ".") for p in prefixes)),
                    None)

    wrong = []
    for module, path in MODULES.items():
        mine = wire_of(module)
        if mine is None:
            continue
        for target, line, where in internal_imports(path):
            theirs = wire_of(target)
            if theirs is not None and theirs != mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} "
                             f"({theirs}, {where})")
    assert not wrong, "a wire protocol imports another:\n" + "\n".join(wrong)


def test_no_module_over_600_lines():
    over = {}
    for path in MODULES.values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            over[str(path.relative_to(ROOT))] = lines
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_mypy_is_strict_below_the_django_layer():
    """pyproject.toml's [tool.mypy] is strict, and its overrides relax only the Django
    layer (or libraries): test_mypy_passes then holds every module below it to strict."""
    tomllib = pytest.importorskip("tomllib")
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy.get("strict") is True
    for override in mypy.get("overrides", []):
        patterns = override["module"]
        patterns = [patterns] if isinstance(patterns, str) else patterns
        relaxing = {key: value for key, value in override.items()
                    if key not in ("module", "ignore_missing_imports")}
        for pattern in patterns:
            if not pattern.startswith("django_daphne"):
                continue
            prefix = pattern.removesuffix(".*")
            below = [module for module in MODULES
                     if (module == prefix or module.startswith(prefix + "."))
                     and layer_of(module) in BELOW_DJANGO]
            assert not (relaxing and below), (
                f"[[tool.mypy.overrides]] for {pattern} relaxes {sorted(relaxing)} on "
                f"{below}, below the Django layer")
    for path in layer_modules(*BELOW_DJANGO):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not line.startswith("# mypy:"), (
                f"{path.relative_to(ROOT)}:{number}: an inline mypy configuration below the "
                "Django layer")

"""Importing the application from a ``module.path:attribute`` string."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class AppImportError(Exception):
    """The application path does not lead to an application; the message says why."""


def where(exc: BaseException) -> str:
    """The file and line of the project's code that raised ``exc`` while importing: the
    innermost frame outside the import machinery ("file.py, line 12")."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_short(exc.filename)}, line {exc.lineno}"
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if not filename.startswith("<frozen importlib") and filename != __file__ \
                and not filename.startswith(os.path.dirname(importlib.__file__)):
            found = (filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return f"{_short(found[0])}, line {found[1]}" if found else "while importing"


def failed_files(exc: BaseException) -> list[str]:
    """The project's source files an import failed in (a SyntaxError's file, and each frame
    of the traceback outside the import machinery, the standard library and installed
    packages): what a development server must watch to notice the fix."""
    import sysconfig

    if isinstance(exc, AppImportError) and exc.__cause__ is not None:
        exc = exc.__cause__
    installed = tuple(os.path.realpath(p) + os.sep for p in {
        sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")
    })
    found = []
    if isinstance(exc, SyntaxError) and exc.filename:
        found.append(exc.filename)
    traceback = exc.__traceback__
    while traceback is not None:
        found.append(traceback.tb_frame.f_code.co_filename)
        traceback = traceback.tb_next
    files = []
    for name in found:
        path = os.path.realpath(name)
        if path.endswith(".py") and os.path.isfile(path) and path != os.path.realpath(__file__) \
                and not path.startswith(installed) and path not in files:
            files.append(path)
    return files


def looked_in(name: str, cwd: str) -> str:
    """Where a module that cannot be found was looked for."""
    parent = name.rpartition(".")[0]
    package = sys.modules.get(parent) if parent else None
    paths = list(getattr(package, "__path__", ()))
    if paths:
        return "looked in " + ", ".join(map(_short, paths))
    return f"not in the current directory {cwd}, nor installed"


def _short(path: str) -> str:
    """A path relative to the current directory when it is under it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def import_application(path: str) -> Any:
    """Import ``module.path:attribute`` (a dotted attribute path allowed), with the current
    directory on sys.path, and return it as a single-callable ASGI 3 application."""
    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise AppImportError(
            f"Application path {path!r} must look like module.path:attribute "
            "(for example myproject.asgi:application)"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        if module_name == missing or module_name.startswith(missing + "."):
            raise AppImportError(
                f"Cannot import module {module_name!r}: no module named {missing!r} "
                f"(looked in the current directory {cwd} and on sys.path)"
            ) from exc
        raise AppImportError(
            f"Cannot import module {module_name!r}: {where(exc)} imports {missing!r}, which "
            f"cannot be found ({looked_in(missing, cwd)})"
        ) from exc
    except Exception as exc:
        # (a SyntaxError's own text names its file and line already)
        said = exc.msg if isinstance(exc, SyntaxError) else exc
        raise AppImportError(
            f"Cannot import module {module_name!r}: {type(exc).__name__}: {said} "
            f"({where(exc)})"
        ) from exc
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppImportError(
                f"Module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(app):
        raise AppImportError(f"{path!r} is not callable, so it is not an ASGI application")
    from asgiref.compatibility import guarantee_single_callable

    return guarantee_single_callable(app)

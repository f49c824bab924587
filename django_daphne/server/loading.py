"""Importing the application from a ``module.path:attribute`` string."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class AppImportError(Exception):
    """The application path does not lead to an application; the message says why."""


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
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppImportError(
                f"Cannot import module {module_name!r}: no module named {exc.name!r} "
                f"(looked in the current directory {cwd} and on sys.path)"
            ) from exc
        raise AppImportError(
            f"Cannot import module {module_name!r}: it imports {exc.name!r}, "
            "which is not installed"
        ) from exc
    except Exception as exc:
        raise AppImportError(
            f"Cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
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

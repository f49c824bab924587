"""Channels' test tools without Daphne installed.

``channels.testing`` imports ``daphne.testing.DaphneProcess`` for its live-server test
case, so once Daphne is uninstalled (README's *Upgrading from Daphne*), every
``from channels.testing import WebsocketCommunicator`` fails. When Daphne is not installed,
the app provides the two names Channels reads, ``daphne`` and ``daphne.testing``, backed by
this module; an installed Daphne is always left to itself, and any other ``daphne.*``
import still fails as it would.

``DaphneProcess`` takes Daphne's arguments and gives what Channels reads (``ready``,
``port``, ``errors``), serving with django-daphne in the child process, so
``ChannelsLiveServerTestCase`` runs on it too.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import multiprocessing
import sys
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

_STAND_IN = ("daphne", "daphne.testing")


class DaphneProcess(multiprocessing.Process):
    """A process that serves ``get_application()`` on ``host`` with django-daphne, as
    Daphne's ``daphne.testing.DaphneProcess`` does: ``ready`` is set once it listens, with
    the port in ``port.value``; ``setup`` and ``teardown`` run around the serving."""

    def __init__(self, host: str, get_application: Callable[[], Any],
                 kwargs: dict[str, Any] | None = None, setup: Callable[[], Any] | None = None,
                 teardown: Callable[[], Any] | None = None, port: int | None = None) -> None:
        super().__init__()
        self.host = host
        self.get_application = get_application
        self.kwargs = kwargs or {}  # Daphne's Server arguments: not ours, not used
        self.setup = setup
        self.teardown = teardown
        self.port = multiprocessing.Value("i", port if port is not None else 0)
        self.ready = multiprocessing.Event()
        self.errors: Any = multiprocessing.Queue()

    def run(self) -> None:
        from .conf import build_config
        from .management.serving import configure_logging, ensure_reactor
        from .server.runtime import Server

        try:
            if self.setup is not None:
                self.setup()
            # (as the live-server test case: the DJANGO_DAPHNE_* environment is not read)
            config, _ = build_config().replace(
                bind=self.host, port=self.port.value, unix_socket=None, fd=None,
                endpoints=[], verbosity=0).single_process()
            configure_logging(config)
            ensure_reactor(config.loop, fresh=True)
            application = self.get_application()

            def listening(where: Sequence[str]) -> None:
                self.port.value = server.ports[0].getHost().port
                self.ready.set()

            server = Server(application, config, on_ready=listening)
            try:
                server.run()
            finally:
                if self.teardown is not None:
                    self.teardown()
        except BaseException as exc:
            self.errors.put((exc, traceback.format_exc()))


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``daphne`` and ``daphne.testing`` when no real Daphne is installed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _STAND_IN:
            return None
        return importlib.machinery.ModuleSpec(fullname, self,
                                              is_package=fullname == "daphne")

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == "daphne.testing":
            return sys.modules[__name__]
        module = types.ModuleType("daphne", "django-daphne's stand-in for Daphne's package "
                                  "name, for channels.testing (see django_daphne."
                                  "daphne_compat)")
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Provide ``daphne.testing`` for Channels, unless Daphne itself is installed."""
    if any(isinstance(finder, _StandInFinder) for finder in sys.meta_path):
        return
    if "daphne" not in sys.modules and importlib.util.find_spec("daphne") is not None:
        return  # the real Daphne
    sys.meta_path.append(_StandInFinder())

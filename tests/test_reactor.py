"""The asyncio reactor is installed whatever imported Twisted first, on one shared loop."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import asyncio, warnings
{before}
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from django_daphne.server.reactor import install
    reactor = install("{loop}")
from twisted.internet import reactor as imported
print(type(reactor).__name__, imported is reactor,
      type(reactor._asyncioEventloop).__module__.split(".")[0],
      asyncio.get_event_loop() is reactor._asyncioEventloop,
      [str(w.message)[:40] for w in caught])
"""


def run(before: str, loop: str = "auto") -> str:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(before=before, loop=loop)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def test_installs_on_uvloop_by_default():
    out = run("")
    assert out.startswith("AsyncioSelectorReactor True uvloop True []"), out


def test_replaces_a_default_reactor_imported_first_and_warns():
    out = run("import twisted.internet.reactor")
    assert out.startswith("AsyncioSelectorReactor True uvloop True"), out
    assert "Something imported twisted.internet.reac" in out


def test_keeps_an_asyncio_reactor_already_installed():
    out = run("from twisted.internet import asyncioreactor; asyncioreactor.install()")
    assert out == "AsyncioSelectorReactor True asyncio True []", out


def test_plain_asyncio_loop_on_request():
    assert run("", loop="asyncio").startswith("AsyncioSelectorReactor True asyncio True")

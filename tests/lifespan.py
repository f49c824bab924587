"""The lifespan half of the test applications: startup and shutdown answered at once, and
a gate that holds a startup until the test releases it (tests.metrics_apps's lifespan,
with METRICS_TEST_GATE set).  Apps run by the server in its own process (some written to
files by the tests) import it as ``tests.lifespan``."""

from __future__ import annotations

import socket


async def serve_lifespan(receive, send) -> None:
    """Answer ``lifespan.startup`` and ``lifespan.shutdown``; return after the shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


class Gate:
    """A UNIX socket each worker's lifespan startup connects to, and waits on."""

    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "gate.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(30)

    def waiting(self, count: int) -> list[socket.socket]:
        """The next ``count`` processes in their startup (each said its pid)."""
        held = []
        for _ in range(count):
            conn, _ = self.sock.accept()
            conn.settimeout(30)
            assert conn.recv(64).strip().isdigit()
            held.append(conn)
        return held

    @staticmethod
    def release(held: list[socket.socket]) -> None:
        for conn in held:
            conn.sendall(b"!")
            conn.close()

"""One application cannot starve the others.

Once a response is complete (or the client left), ``receive()`` says http.disconnect (or
websocket.disconnect) every time it is called.  An application that keeps calling it, as a
naive disconnect watcher does, got that answer without the event loop ever getting a turn:
the whole server froze while it spun (7.5 million calls in 5 s, every other client
waiting).  Each repeat now waits a turn of the loop.  The spinning applications here stop
as soon as another client's request is served (/flag), or give up after five million
calls: only a server that serves others meanwhile sees them "interrupted"."""

from __future__ import annotations

import time
import uuid

from tests.conftest import ServerProcess


def spin_result(server: ServerProcess, name: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        result = server.http.get(f"/spins?name={name}").text
        if result != "running":
            return result
        assert time.monotonic() < deadline, "the spinning application never ended"


def test_receive_loop_after_the_response_does_not_hold_the_server(bound_server):
    name = "http-" + uuid.uuid4().hex
    assert bound_server.http.get(f"/spin?name={name}").text == "done"
    bound_server.wait_for(r"app: spinning")
    assert bound_server.http.get(f"/flag?name={name}").text == "flagged"
    assert spin_result(bound_server, name) == "interrupted"


def test_receive_loop_after_a_websocket_closed_does_not_hold_the_server(bound_server):
    name = "ws-" + uuid.uuid4().hex
    with bound_server.ws_connect(f"/ws/spin?name={name}") as ws:
        ws.close()
    bound_server.wait_for(r"app: ws spinning")
    assert bound_server.http.get(f"/flag?name={name}").text == "flagged"
    assert spin_result(bound_server, name) == "interrupted"

"""Operations: a reload on SIGHUP without dropping a connection, workers replaced after
--max-requests, added and removed with SIGTTIN and SIGTTOU, and systemd's Type=notify
protocol, tested against a real datagram socket. Real processes, real signals, real
sockets."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server.test_workers import alive, lines_matching, worker_pids

VERSIONED_APP = '''
from tests.lifespan import serve_lifespan
VERSION = {version!r}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    if scope["type"] == "websocket":
        await receive()
        await send({{"type": "websocket.accept"}})
        while (await receive())["type"] == "websocket.receive":
            await send({{"type": "websocket.send", "text": VERSION}})
        return
    body = VERSION.encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", b"%d" % len(body))]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def write_app(directory, version: str, broken: bool = False) -> None:
    source = VERSIONED_APP.format(version=version)
    if broken:
        source = "raise RuntimeError('the new code is broken')\n" + source
    (directory / "versioned.py").write_text(source)
    # (a fresh mtime is not needed: each worker imports the module in a new process)


class Load:
    """Keep-alive clients sending GET / in a loop until stopped: what each got."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Condition()
        self.sent = self.answered = self.failed = self.refused = self.retried = 0
        self.versions: list[str] = []
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                with self.lock:
                    self.sent += 1
                try:
                    response = self._get(client)
                except httpx.ConnectError as exc:
                    with self.lock:
                        self.refused += 1
                        self.errors.append(repr(exc))
                    continue
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failed += 1
                        self.errors.append(repr(exc))
                    continue
                with self.lock:
                    if response.status_code == 200 and response.text in ("1", "2"):
                        self.answered += 1
                        self.versions.append(response.text)
                        self.lock.notify_all()
                    else:
                        self.failed += 1
                        self.errors.append(f"{response.status_code} {response.text!r}")

    def _get(self, client: httpx.Client) -> httpx.Response:
        """GET /, retried once when a kept-alive connection was closed before any answer,
        as RFC 9112 9.3.1 lets a client retry an idempotent request (browsers do): a
        draining server closes its idle keep-alive connections."""
        try:
            return client.get(self.url + "/")
        except httpx.RemoteProtocolError:
            with self.lock:
                self.retried += 1
            return client.get(self.url + "/")

    def wait_answers(self, count: int) -> None:
        """Until ``count`` answers in all have come (or 30 s)."""
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.versions) >= count, 30), self.errors

    def seen_since(self, start: int) -> list[str]:
        with self.lock:
            return self.versions[start:]

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_sighup_reloads_the_code_under_load_without_dropping_anything(start_server, tmp_path):
    write_app(tmp_path, "1")
    server = start_server("--workers", "2", "--shutdown-timeout", "2", app="versioned:app",
                          cwd=tmp_path)
    old = worker_pids(server)
    opened = contextlib.ExitStack()
    sockets = [opened.enter_context(connect(f"ws://127.0.0.1:{server.port}/ws"))
               for _ in range(3)]
    load = Load(server.url)
    try:
        for ws in sockets:
            ws.send("?")
            assert ws.recv(timeout=10) == "1"
        write_app(tmp_path, "2")
        server.signal(signal.SIGHUP)
        server.wait_for(r"Received SIGHUP: starting 2 new workers")
        reloaded = server.wait_for(r"Reloaded: workers ([\d, ]+) serve; ([\d, ]+) drain")
        new = {int(pid) for pid in reloaded.group(1).split(", ")}
        assert {int(pid) for pid in reloaded.group(2).split(", ")} == old
        assert not new & old
        # the old workers drain: their WebSockets end with 1001 (going away)
        for ws in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        lines_matching(server, r"Worker (\d+) stopped$", count=2)
        mark = len(load.seen_since(0))
        # new connections, and the clients' reconnections, reach the new code
        with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            ws.send("?")
            assert ws.recv(timeout=10) == "2"
        load.wait_answers(mark + 50)
    finally:
        load.finish()
        opened.close()
    after = load.seen_since(mark)
    assert set(after) == {"2"}, after[:20]
    assert load.failed == 0 and load.refused == 0, load.errors
    assert load.sent == load.answered + load.failed + load.refused
    assert load.answered > 100
    assert not any(alive(pid) for pid in old)
    print(f"reload under load: sent {load.sent}, answered {load.answered}, refused "
          f"{load.refused}, failed {load.failed}, retried on a closed keep-alive "
          f"connection {load.retried}")


def test_a_reload_that_fails_leaves_the_old_workers_serving(start_server, tmp_path):
    write_app(tmp_path, "1")
    server = start_server("--workers", "2", app="versioned:app", cwd=tmp_path)
    old = worker_pids(server)
    write_app(tmp_path, "2", broken=True)
    server.signal(signal.SIGHUP)
    server.wait_for(r"Reload failed: new worker \d+ exited with status 1 before it was "
                    r"ready \(see its error above\); the current workers go on serving")
    assert "the new code is broken" in server.output
    assert server.proc.poll() is None
    with httpx.Client() as client:
        assert {client.get(server.url + "/", headers={"Connection": "close"}).text
                for _ in range(10)} == {"1"}
    assert all(alive(pid) for pid in old)


def test_a_single_process_says_how_to_get_reloads(start_server):
    server = start_server()
    server.signal(signal.SIGHUP)
    server.wait_for(r"Received SIGHUP: a single server process cannot reload its code; run "
                    r"it with --workers")
    assert httpx.get(server.url + "/pid").text == str(server.proc.pid)


def test_max_requests_replaces_workers_without_a_failed_request(start_server):
    server = start_server("--workers", "1", "--max-requests", "20",
                          "--max-requests-jitter", "5")
    worker_pids(server)
    pids: list[int] = []
    sent = answered = retried = 0
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=30) as client:
        while len(set(pids)) < 3 and time.monotonic() < deadline:
            sent += 1
            try:
                response = client.get(server.url + "/pid")
            except httpx.RemoteProtocolError:  # a drained keep-alive connection: retry
                retried += 1
                response = client.get(server.url + "/pid")
            assert response.status_code == 200
            answered += 1
            pids.append(int(response.text))
    assert len(set(pids)) >= 3, server.output  # the first worker and two successors at least
    assert sent == answered
    # each worker served its limit at least (20 plus up to 5), the successor took over
    first = pids[0]
    assert pids.count(first) >= 20
    print(f"max-requests: sent {sent}, answered {answered}, retried {retried}, "
          f"workers {len(set(pids))}")
    assert re.search(r"Served \d+ requests \(--max-requests\): asking to be replaced",
                     server.output)
    assert "reached --max-requests; starting its successor" in server.output
    assert re.search(r"Stopping worker \d+ gracefully \(--max-requests\)", server.output)


def test_sigttin_adds_a_worker_and_sigttou_removes_one(start_server):
    server = start_server("--workers", "1")
    [first] = worker_pids(server)
    server.signal(signal.SIGTTIN)
    server.wait_for(r"Received SIGTTIN: adding a worker \(2 now\)")
    started = lines_matching(server, r"Started worker (\d+)$", count=2)
    added = int(started[-1].rsplit(" ", 1)[1])
    server.wait_for(rf"Worker {added} ready")
    with httpx.Client() as client:
        seen = set()
        for _ in range(400):
            seen.add(int(client.get(server.url + "/pid", headers={"Connection": "close"}).text))
            if seen == {first, added}:
                break
    assert seen == {first, added}
    server.signal(signal.SIGTTOU)
    server.wait_for(r"Received SIGTTOU: removing a worker \(1 now\)")
    server.wait_for(rf"Worker {added} stopped")
    assert not alive(added) and alive(first)


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(30)
        self.messages: list[dict[str, str]] = []

    def next(self, wanted: str) -> dict[str, str]:
        """The next message that has field ``wanted`` (others are kept in .messages)."""
        while True:
            data = self.sock.recv(4096).decode()
            fields = dict(line.split("=", 1) for line in data.split("\n") if line)
            self.messages.append(fields)
            if wanted in fields:
                return fields

    def close(self) -> None:
        self.sock.close()


def test_systemd_notify_single_process(start_server, tmp_path):
    notify = NotifySocket(tmp_path)
    try:
        server = start_server(env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
        ready = notify.next("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("Serving on TCP address 127.0.0.1:")
        for _ in range(3):  # pinged from the event loop, every 0.1 s
            assert notify.next("WATCHDOG") == {"WATCHDOG": "1"}
        # the open connections, for systemctl status
        with socket.create_connection(("127.0.0.1", server.port)):
            while not notify.next("STATUS")["STATUS"].endswith(": 1 connection"):
                pass
        server.signal(signal.SIGTERM)
        assert notify.next("STOPPING")["STOPPING"] == "1"
        assert server.wait_exit() == 0
    finally:
        notify.close()


def test_systemd_notify_with_workers_reload_and_watchdog(start_server, tmp_path):
    notify = NotifySocket(tmp_path)
    try:
        # (with a --worker-timeout the supervisor replaces a stuck worker itself instead)
        server = start_server("--workers", "2", "--worker-timeout", "0",
                              env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"})
        pids = worker_pids(server)
        ready = notify.next("READY")
        assert ready["STATUS"] == "2 workers: " + ", ".join(map(str, sorted(pids)))
        notify.next("WATCHDOG")  # every worker's loop turns: the supervisor pings
        server.signal(signal.SIGHUP)
        reloading = notify.next("RELOADING")
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        after = notify.next("READY")
        new = {int(p) for p in after["STATUS"].split(": ", 1)[1].split(", ")}
        assert len(new) == 2 and not new & pids
        # the workers report to the supervisor only: every READY came from it
        assert sum("READY" in m for m in notify.messages) == 2
        # a worker whose event loop is stuck stops the watchdog pings
        blocked = threading.Thread(
            target=lambda: httpx.get(server.url + "/block?seconds=3", timeout=30),
            daemon=True)
        blocked.start()
        server.wait_for(r"sent no heartbeat for \d+\.\ds: no watchdog ping")
        blocked.join(30)
        server.signal(signal.SIGTERM)
        assert notify.next("STOPPING")["STOPPING"] == "1"
        assert server.wait_exit() == 0
    finally:
        notify.close()

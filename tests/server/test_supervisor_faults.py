"""The --workers supervisor under faults: signals in the middle of a transition, new code
that hangs or fails, workers that never stop or whose event loop is stuck, a removed slot.
Each test fails on the supervisor before its state machine (issue 21, items 1-3 and 5-7).
Real processes, real signals, real sockets; the supervisor's children read from /proc."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import read_to_close
from tests.server.test_operations import NotifySocket
from tests.server.test_workers import lines_matching, wait_gone, worker_pids

# one module, rewritten for each version: "/" answers VERSION, "/pid" VERSION:PID, "/hang"
# never answers (its task ends when the client goes), "/stuck" waits in a thread for ever
# (as a sync view stuck on a lock would); {gate} makes a worker's import wait on ImportGate
APP = '''
import asyncio, os, socket, threading
from tests.lifespan import serve_lifespan
VERSION = {version!r}
{gate}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    path = scope["path"]
    if path == "/hang":
        print(f"app: hanging in {{os.getpid()}}", flush=True)
        await asyncio.sleep(3600)
    if path == "/stuck":
        print(f"app: stuck in {{os.getpid()}}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, threading.Event().wait)
    body = (VERSION if path == "/" else f"{{VERSION}}:{{os.getpid()}}").encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", b"%d" % len(body))]}})
    await send({{"type": "http.response.body", "body": body}})
'''

GATED = '''
if os.environ.get("DJANGO_DAPHNE_WORKER_ENDPOINTS"):
    _gate = socket.socket(socket.AF_UNIX)
    _gate.connect({path!r})
    print(f"app: importing in {{os.getpid()}}", flush=True)
    _gate.recv(1)
'''

# the new code's import never ends (a database that does not answer, a deadlock)
HANGING = '''
if os.environ.get("DJANGO_DAPHNE_WORKER_ENDPOINTS"):
    print(f"app: importing in {os.getpid()} for ever", flush=True)
    threading.Event().wait()
'''

BROKEN = '\nraise RuntimeError("the new code is broken")\n'

# each version imported afresh: no bytecode cache a quick rewrite of the same size could hit
ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def write_app(directory, version: str, gate: str = "") -> None:
    """Replace the application's module at once (an import never sees half a file)."""
    (directory / "faultapp.tmp").write_text(APP.format(version=version, gate=gate))
    os.replace(directory / "faultapp.tmp", directory / "faultapp.py")


class ImportGate:
    """A UNIX socket that the GATED application's import waits on: each importing worker
    connects, and goes on once released."""

    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "gate.sock")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.sock.settimeout(30)
        self.waiting: list[socket.socket] = []

    @property
    def code(self) -> str:
        return GATED.format(path=self.path)

    def wait(self, count: int) -> None:
        """Until ``count`` imports in all have reached the gate."""
        while len(self.waiting) < count:
            self.waiting.append(self.sock.accept()[0])

    def release(self, count: int | None = None) -> None:
        """Let the first ``count`` waiting imports (or all) go on."""
        released = self.waiting[:count] if count is not None else self.waiting
        self.waiting = self.waiting[len(released):]
        for conn in released:
            with contextlib.suppress(OSError):  # an import killed while it waited
                conn.sendall(b"go")
            conn.close()

    def close(self) -> None:
        self.release()
        self.sock.close()


@pytest.fixture
def gate(tmp_path):
    gate = ImportGate(tmp_path)
    yield gate
    gate.close()


def children(pid: int) -> set[int]:
    """The live child processes of ``pid``, from /proc."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(child) for child in f.read().split())
    return found


def started(server) -> list[int]:
    """Every worker started so far, in order."""
    return [int(pid) for pid in re.findall(r"Started worker (\d+)$", server.output, re.M)]


def get(server, path: str = "/", timeout: float = 10.0) -> str:
    """GET ``path`` on a new connection: the body."""
    with server.connect(timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        received, ended = read_to_close(sock, timeout)
    assert ended and received.startswith(b"HTTP/1.1 200"), received
    return received.split(b"\r\n\r\n", 1)[1].decode()


def settled_on(server, pids: set[int]) -> None:
    """Every other worker has exited and been reaped (the supervisor logs each): the
    supervisor's only children are ``pids``."""
    for pid in set(started(server)) - pids:
        server.wait_for(rf"\] (New w|W)orker {pid} (stopped|exited)|\] The successor {pid} "
                        "of worker", timeout=30)
    assert children(server.proc.pid) == pids, server.output


def send_and_wait(server, signum: int, pattern: str, count: int) -> None:
    """Send ``signum`` and wait until the supervisor has taken it (the ``count``-th line
    matching ``pattern``): signals sent faster than that may merge into one."""
    server.signal(signum)
    lines_matching(server, pattern, count)


# -- item 1: removing a worker never leaves a listening socket without an acceptor


def connect_many(server, count: int = 100, timeout: float = 10.0) -> dict[str, int]:
    """``count`` new connections at once, each asking /pid: how many were answered by each
    worker, and how many hung (no answer within ``timeout``) or were reset."""
    def one(_: int) -> str:
        try:
            with server.connect(timeout) as sock:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                sock.settimeout(timeout)
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
        except TimeoutError:
            return "hung"
        except OSError:  # ConnectionResetError, an SSL error from a reset
            return "reset"
        if not received.startswith(b"HTTP/1.1 200"):
            return "reset"
        return received.rsplit(b":", 1)[1].decode()

    with ThreadPoolExecutor(25) as pool:
        results = list(pool.map(one, range(count)))
    return {outcome: results.count(outcome) for outcome in set(results)}


@pytest.mark.parametrize("binding", ["tcp", "tls"])
@pytest.mark.parametrize("workers", [2, 4])
def test_sigttou_leaves_no_socket_without_an_acceptor(start_server, tmp_path, binding,
                                                      workers):
    """With reuse-port each slot has a socket of its own on the port: the removed slot's
    was left open in the supervisor with nobody accepting, and the kernel went on giving it
    its share of new connections, which hung (55 of 100).  Now it is closed at once, in the
    supervisor and in the draining worker, even while that worker still drains a request."""
    write_app(tmp_path, "1")
    server = start_server("--workers", str(workers), "--shutdown-timeout", "20",
                          app="faultapp:app", cwd=tmp_path, binding=binding, env=ENV)
    pids = worker_pids(server)
    first, *removed = started(server)
    # the first slot removed (the last) drains a request for as long as this test wants
    for attempt in range(1, 101):
        hanging = server.connect()
        hanging.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        hung_in = lines_matching(server, r"app: hanging in (\d+)", attempt)[-1]
        if hung_in.endswith(f" {removed[-1]}"):
            break
        hanging.close()  # another worker's: it would keep that one draining
    else:
        pytest.fail("no request reached the last worker")
    try:
        for now in range(workers - 1, 0, -1):
            # (a slot's sockets are closed before its workers are told to drain)
            send_and_wait(server, signal.SIGTTOU, r"Stopping worker \d+ gracefully "
                          r"\(SIGTTOU\)", workers - now)
        lines_matching(server, r"Worker \d+ stopped$", workers - 2)  # the others drained
        assert pids == {first, *removed}
        server.wait_for(rf"\[{removed[-1]}\] Received SIGTERM")
        # while the last slot's worker still drains: nothing hangs (one that came in the
        # moment before its socket closed may be served by it, or reset: a client retries)
        during = connect_many(server)
        assert set(during) <= {str(first), str(removed[-1]), "reset"}, during
        assert during.get(str(first)), during
    finally:
        hanging.close()
    server.wait_for(rf"Worker {removed[-1]} stopped")
    after = connect_many(server)
    assert after == {str(first): 100}, after
    settled_on(server, {first})


# -- item 2: a boot deadline; reloads that cannot wedge


def test_new_code_that_hangs_on_import_fails_the_reload_at_the_boot_deadline(
        start_server, tmp_path):
    """New code whose import never ends: the reload waited for ever (every later SIGHUP
    ignored, systemd left in RELOADING=1).  Past --worker-boot-timeout the new workers are
    killed, one line says why, the old ones go on serving, systemd hears READY=1 again, and
    the next SIGHUP reloads."""
    notify = NotifySocket(tmp_path)
    try:
        write_app(tmp_path, "1")
        server = start_server("--workers", "2", "--worker-boot-timeout", "5",
                              "--shutdown-timeout", "1", app="faultapp:app", cwd=tmp_path,
                              env={**ENV, "NOTIFY_SOCKET": notify.path})
        old = worker_pids(server)
        notify.next("READY")
        write_app(tmp_path, "2", gate=HANGING)
        server.signal(signal.SIGHUP)
        assert notify.next("RELOADING")["RELOADING"] == "1"
        server.wait_for(r"app: importing in \d+ for ever")
        failed = server.wait_for(r"Reload failed: new worker \d+ was not ready within 5s "
                                 r"\(--worker-boot-timeout\); killed; the current workers "
                                 r"go on serving")
        ready = notify.next("READY")
        assert ready["STATUS"].startswith("Reload failed (new worker "), ready
        assert ready["STATUS"].endswith("2 workers: " + ", ".join(map(str, sorted(old))))
        assert failed
        assert {get(server) for _ in range(10)} == {"1"}
        settled_on(server, old)
        write_app(tmp_path, "3")
        server.signal(signal.SIGHUP)
        notify.next("RELOADING")
        reloaded = server.wait_for(r"Reloaded: workers ([\d, ]+) serve")
        new = {int(pid) for pid in reloaded.group(1).split(", ")}
        assert notify.next("READY")["STATUS"] == "2 workers: " + ", ".join(
            map(str, sorted(new)))
        settled_on(server, new)
        assert {get(server) for _ in range(10)} == {"3"}
    finally:
        notify.close()


def reload_count(server) -> tuple[int, int]:
    """(reloads started, reloads ended) so far, from the log."""
    output = server.output
    return (len(re.findall(r": starting \d+ new workers", output)),
            len(re.findall(r"Reloaded: |Reload failed: ", output)))


def wait_settled(server, reloads: int) -> set[int]:
    """Until ``reloads`` reloads in all have ended: the workers that serve."""
    with server.cond:
        assert server.cond.wait_for(lambda: reload_count(server)[1] >= reloads, 60), \
            server.output
    match = re.findall(r"Reloaded: workers ([\d, ]+) serve", server.output)[-1]
    return {int(pid) for pid in match.split(", ")}


def test_a_sighup_storm_ends_with_every_worker_on_the_latest_code(start_server, tmp_path):
    """Ten SIGHUPs within a second, the code changed before each: a SIGHUP during a reload
    was ignored, and the workers ended on two versions for good.  One more reload now
    follows the one under way, so the last code on disk is what every worker runs."""
    write_app(tmp_path, "0")
    server = start_server("--workers", "2", "--shutdown-timeout", "1", app="faultapp:app",
                          cwd=tmp_path, env=ENV)
    worker_pids(server)
    for version in range(1, 11):
        write_app(tmp_path, str(version))
        send_and_wait(server, signal.SIGHUP, r"Received SIGHUP", version)
    # the reloads the log now promises: those started, and one more if a SIGHUP came after
    # the last start (the lines after the tenth SIGHUP's are its consequences)
    output = server.output
    starts, _ = reload_count(server)
    last_start = max(m.start() for m in re.finditer(r": starting \d+ new workers", output))
    again = "Received SIGHUP during a reload" in output[last_start:]
    serving = wait_settled(server, starts + again)
    assert "Reloading again (SIGHUP during the last reload)" in server.output or not again
    settled_on(server, serving)
    assert {get(server, "/pid") for _ in range(20)} <= {f"10:{pid}" for pid in serving}


@pytest.mark.parametrize("fault", ["sigttin", "sigttou", "killed"])
def test_a_fault_during_a_reload_settles_on_one_version(start_server, tmp_path, gate,
                                                       fault):
    """While the new workers import: SIGTTIN (the reload waited for a worker it never
    started), SIGTTOU, or a new worker that was ready is killed (its replacement joined the
    old generation).  Each wedged the reload or mixed the versions; now the reload ends
    with the configured count, all on the new code, and no other process left."""
    write_app(tmp_path, "1")
    workers = 3 if fault == "sigttou" else 2
    server = start_server("--workers", str(workers), "--shutdown-timeout", "1",
                          app="faultapp:app", cwd=tmp_path, env=ENV)
    worker_pids(server)
    write_app(tmp_path, "2", gate=gate.code)
    server.signal(signal.SIGHUP)
    gate.wait(workers)
    expected = workers
    if fault == "sigttin":
        send_and_wait(server, signal.SIGTTIN, r"Received SIGTTIN: adding a worker", 1)
        gate.wait(workers + 2)  # the new slot filled in the old generation and the new
        expected = workers + 1
    elif fault == "sigttou":
        send_and_wait(server, signal.SIGTTOU, r"Received SIGTTOU: removing a worker", 1)
        expected = workers - 1
    else:
        gate.release(1)
        ready = lines_matching(server, r"Worker \d+ ready", workers + 1)
        victim = int(re.findall(r"Worker (\d+) ready", "\n".join(ready))[-1])
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"New worker {victim} exited with status -9; starting another in "
                        r"its place")
        gate.wait(workers)  # its replacement imports too
    gate.release()
    serving = wait_settled(server, 1)
    assert len(serving) == expected, server.output
    settled_on(server, serving)
    assert {get(server, "/pid").split(":")[0] for _ in range(10)} == {"2"}
    if fault == "sigttou":
        assert "Stopping worker" in server.output and "(SIGTTOU)" in server.output


# -- item 5: retired workers get the stop deadline


@pytest.mark.parametrize("retired_by", ["reload", "sigttou", "max-requests"])
def test_a_retired_worker_that_never_exits_is_killed(start_server, tmp_path, retired_by):
    """A worker whose request waits in a thread for ever cannot exit (the interpreter waits
    for that thread): retired, it logged "Server stopped" and lived on.  Now a retired
    worker is killed past the stop deadline, as on SIGTERM."""
    write_app(tmp_path, "1")
    args = ["--shutdown-timeout", "0.5"]
    args += ["--workers", "2"] if retired_by == "sigttou" else ["--workers", "1"]
    if retired_by == "max-requests":
        args += ["--max-requests", "1"]
    server = start_server(*args, app="faultapp:app", cwd=tmp_path, env=ENV)
    worker_pids(server)
    victim = started(server)[-1]
    stuck = []
    while True:  # until a request is stuck in the victim (with two workers, a matter of luck)
        sock = server.connect()
        sock.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        stuck.append(sock)
        line = lines_matching(server, r"app: stuck in \d+", len(stuck))[-1]
        if line.endswith(f" {victim}") or len(stuck) == 20:
            break
    assert line.endswith(f" {victim}"), server.output
    try:
        if retired_by == "reload":
            server.signal(signal.SIGHUP)
        elif retired_by == "sigttou":
            server.signal(signal.SIGTTOU)
        server.wait_for(rf"Stopping worker {victim} gracefully")
        server.wait_for(rf"Worker {victim} did not stop in time; killing it", timeout=30)
        assert not wait_gone({victim})
        server.wait_for(rf"Worker {victim} stopped \(status -9\)")
        assert server.proc.poll() is None
    finally:
        for sock in stuck:
            sock.close()


# -- item 6: a failed successor is retried


def test_a_failed_successor_is_retried_until_the_code_is_fixed(start_server, tmp_path):
    """--max-requests with broken code on disk: the successor fails, and the worker was
    then never recycled again.  Now the successor is tried again, with a growing delay,
    until one starts."""
    write_app(tmp_path, "1")
    server = start_server("--workers", "1", "--max-requests", "3", app="faultapp:app",
                          cwd=tmp_path, env=ENV)
    [first] = worker_pids(server)
    write_app(tmp_path, "2", gate=BROKEN)
    for _ in range(3):
        assert get(server, "/pid") == f"1:{first}"
    server.wait_for(rf"The successor \d+ of worker {first} exited with status 1 before it "
                    rf"was ready; worker {first} goes on serving, and a new successor "
                    r"starts in 1\.0s")
    assert get(server, "/pid") == f"1:{first}"
    write_app(tmp_path, "3")
    server.wait_for(rf"Stopping worker {first} gracefully \(--max-requests\)", timeout=60)
    successor = started(server)[-1]
    settled_on(server, {successor})
    assert get(server, "/pid") == f"3:{successor}"


# -- item 7: hung workers


def test_a_worker_whose_event_loop_is_stuck_is_replaced(start_server, tmp_path):
    """Blocking code in an async view stops the worker's event loop: the worker kept its
    sockets and was never replaced.  Its heartbeat now stops, and past --worker-timeout it
    is killed, its threads' tracebacks in the log, and a new one takes its slot."""
    source = ("import time\nfrom tests.apps import app as inner\n\n"
              "async def app(scope, receive, send):\n"
              "    if scope['type'] == 'http' and scope['path'] == '/block':\n"
              "        print('app: blocking', flush=True)\n"
              "        time.sleep(3600)\n"
              "    return await inner(scope, receive, send)\n")
    (tmp_path / "blockapp.py").write_text(source)
    notify = NotifySocket(tmp_path)
    pings = threading.Semaphore(0)

    def read_notify() -> None:  # at once: a full datagram queue would block the sender
        with contextlib.suppress(OSError):
            while data := notify.sock.recv(4096):
                if data == b"WATCHDOG=1":
                    pings.release()

    reader = threading.Thread(target=read_notify, daemon=True)
    reader.start()
    server = start_server("--workers", "2", "--worker-timeout", "3", app="blockapp:app",
                          cwd=tmp_path, env={"NOTIFY_SOCKET": notify.path,
                                             "WATCHDOG_USEC": "1000000"})
    pids = worker_pids(server)
    blocked = []

    def block() -> None:
        with server.connect(60) as sock:
            sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
            blocked.append(read_to_close(sock, 60))

    thread = threading.Thread(target=block)
    thread.start()
    server.wait_for("app: blocking")
    hung = server.wait_for(r"Worker (\d+) sent no heartbeat for \d+\.\ds \(--worker-timeout "
                           r"3\): its event loop is stuck; killing it \(its threads' "
                           r"tracebacks follow\); starting a new one")
    victim = int(hung.group(1))
    assert victim in pids
    while pings.acquire(blocking=False):  # those sent so far
        pass
    server.wait_for(r'File ".*blockapp\.py", line 7 in app')  # faulthandler's dump
    assert not wait_gone({victim})
    thread.join(30)
    assert blocked and blocked[0][1]  # its connection ended with the process
    lines_matching(server, r"Started worker \d+$", 3)
    replacement = started(server)[-1]
    server.wait_for(rf"Worker {replacement} ready")
    serving = pids - {victim} | {replacement}
    settled_on(server, serving)
    seen = set()
    for _ in range(400):
        seen.add(int(get(server, "/pid")))
        if seen == serving:
            break
    assert seen == serving
    # systemd's watchdog went on: the supervisor replaces a stuck worker itself (a service
    # restart would drop every other worker's connections)
    assert pings.acquire(timeout=30)
    notify.sock.shutdown(socket.SHUT_RDWR)
    notify.close()
    reader.join(10)
    assert "no watchdog ping" not in server.output

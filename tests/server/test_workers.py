"""--workers: one supervisor binds, N workers serve, a dead worker is replaced, SIGTERM
drains them all. Real processes, real signals, real sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import sys
import threading

import httpx
import pytest

from tests.certs import make_certificate
from tests.conftest import read_response
from tests.server.test_bindings import systemd_launcher


def worker_pids(server) -> set[int]:
    match = server.wait_for(r"Server ready \((\d+) workers: ([\d, ]+)\)")
    return {int(pid) for pid in match.group(2).split(", ")}


def pids_answering(url: str, want: set[int], attempts: int = 400, **kwargs) -> set[int]:
    """Ask /pid over new connections until every pid in ``want`` answered (or give up)."""
    seen: set[int] = set()
    for _ in range(attempts):
        with httpx.Client(**kwargs) as client:
            seen.add(int(client.get(url + "/pid", headers={"Connection": "close"}).text))
        if want <= seen:
            break
    return seen


def lines_matching(server, pattern: str, count: int) -> list[str]:
    """Wait until ``pattern`` has matched ``count`` times in the output; return the lines.
    (Counted per match, not per line: two workers printing at once can share a line.)"""
    regex = re.compile(pattern)
    with server.cond:
        while True:
            found = [line for line in server.lines if regex.search(line)]
            if sum(len(regex.findall(line)) for line in found) >= count:
                return found
            assert server.cond.wait(15), server.output


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("reuse_port", ["on", "off"])
def test_two_workers_both_serve(start_server, reuse_port):
    server = start_server("--workers", "2", "--reuse-port", reuse_port)
    pids = worker_pids(server)
    assert len(pids) == 2 and server.proc.pid not in pids
    assert pids_answering(server.url, pids) == pids
    # each log line names its process: the supervisor's and each worker's can be told apart
    assert f"[{server.proc.pid}] Server ready" in server.output
    for pid in pids:
        assert re.search(rf"\[{pid}\] Listening on ", server.output), server.output


def test_a_burst_of_keepalive_connections_is_shared(start_server):
    """Connections that arrive together (a load balancer's pool, wrk's) are spread over the
    workers: each has its own socket on the port (SO_REUSEPORT), so a worker that woke
    first cannot take the whole burst and keep it, as it can from one shared socket."""
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    connections = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
                   for _ in range(40)]
    answered = set()
    try:
        for sock in connections:
            sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in connections:
            _status, _headers, body = read_response(sock, bytearray())
            answered.add(int(body))
    finally:
        for sock in connections:
            sock.close()
    assert answered == pids


def test_a_killed_worker_is_replaced_and_service_goes_on(start_server):
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    match = server.wait_for(rf"Worker {victim} exited with status -9; starting a new one")
    assert match
    started = lines_matching(server, r"Started worker (\d+)$", count=3)
    replacement = int(started[-1].rsplit(" ", 1)[1])
    assert replacement not in pids
    survivors = (pids - {victim}) | {replacement}
    assert pids_answering(server.url, survivors) == survivors


def test_sigterm_drains_every_worker(start_server):
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    responses = []
    request = threading.Thread(
        target=lambda: responses.append(httpx.get(server.url + "/sleep?seconds=1")))
    request.start()
    server.wait_for("app: sleeping")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    request.join(10)
    assert responses and responses[0].text == "slept"
    assert not any(alive(pid) for pid in pids)
    assert "stopping 2 workers gracefully" in server.output


def test_workers_share_tls_and_unix_sockets(start_server, tmp_path):
    key, cert = make_certificate(tmp_path)
    path = str(tmp_path / "w.sock")
    server = start_server(
        "--workers", "2", "-u", path, "-e",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    pids = worker_pids(server)
    tls_port = server.addresses[0][2]
    assert server.addresses[0][0] == "TLS"
    context = ssl.create_default_context(cafile=str(cert))
    assert pids_answering(f"https://localhost:{tls_port}", pids, verify=context) == pids
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert int(client.get("http://localhost/pid").text) in pids


def test_workers_refuse_an_endpoint_they_cannot_share(start_server):
    """An endpoint plugin's type (tests/plugin_path) that the supervisor cannot bind itself."""
    from tests.conftest import ROOT

    server = start_server("--workers", "2", "-e", "testtcp:0", ready=False,
                          env={"PYTHONPATH": str(ROOT / "tests" / "plugin_path")})
    assert server.wait_exit() == 1
    assert "--workers cannot share endpoint 'testtcp:0'" in server.output


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    """Wait until every pid has exited (pidfds: no polling); return those still alive."""
    import select

    left = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                left.add(pid)
        finally:
            os.close(fd)
    return left


def app_module(tmp_path, source: str) -> str:
    (tmp_path / "opsapp.py").write_text(source)
    return "opsapp:app"


IN_WORKER = 'os.environ.get("DJANGO_DAPHNE_WORKER_ENDPOINTS")'


def test_unix_socket_survives_a_worker_restart(start_server, tmp_path):
    """A worker that stops gracefully (SIGTERM to it) and is replaced leaves the shared UNIX
    socket file alone: Twisted's adopted UNIX port removed it (and shut the shared socket
    down), so no client could connect and every replacement failed to start."""
    path = str(tmp_path / "w.sock")
    server = start_server("--workers", "2", "-u", path, count=0)
    pids = worker_pids(server)
    victim = min(pids)
    os.kill(victim, signal.SIGTERM)
    server.wait_for(rf"Worker {victim} exited with status 0; starting a new one")
    started = lines_matching(server, r"Started worker (\d+)$", count=3)
    replacement = int(started[-1].rsplit(" ", 1)[1])
    server.wait_for(rf"Worker {replacement} ready")
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    survivors = (pids - {victim}) | {replacement}
    seen = set()
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        for _ in range(400):
            seen.add(int(client.get("http://localhost/pid",
                                    headers={"Connection": "close"}).text))
            if seen == survivors:
                break
    assert seen == survivors
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not os.path.exists(path)  # the supervisor, who bound it, removes it


def test_systemd_stop_signals_every_process_and_the_drain_still_finishes(start_server):
    """systemd's default KillMode=control-group sends SIGTERM to every process of the
    service at once: each worker hears it from systemd and again from the supervisor.
    The second SIGTERM used to mean 'stop at once', cutting the requests in flight."""
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    responses = []
    request = threading.Thread(
        target=lambda: responses.append(httpx.get(server.url + "/sleep?seconds=1",
                                                  timeout=10)))
    request.start()
    server.wait_for("app: sleeping")
    for pid in (server.proc.pid, *pids):
        os.kill(pid, signal.SIGTERM)
    assert server.wait_exit() == 0
    request.join(10)
    assert responses and responses[0].text == "slept"
    assert "Second stop signal" not in server.output


def test_second_signal_to_the_supervisor_stops_workers_at_once(start_server):
    server = start_server("--workers", "2", "--shutdown-timeout", "60")
    worker_pids(server)
    failed = []

    def hang():
        try:
            httpx.get(server.url + "/hang", timeout=30)
        except httpx.HTTPError as exc:
            failed.append(exc)

    request = threading.Thread(target=hang)
    request.start()
    server.wait_for("app: hanging")
    server.signal(signal.SIGTERM)
    server.wait_for("stopping 2 workers gracefully")
    server.signal(signal.SIGINT)
    assert server.wait_exit(timeout=15) == 1
    request.join(10)
    assert failed
    assert "Second stop signal: closing every connection now" in server.output


def test_workers_that_fail_to_start_stop_the_server(start_server, tmp_path):
    """Workers that die before they are ready (here: the lifespan startup fails after a
    slow import, as a large Django project's may) are restarted with a growing delay, and
    five failures in a row stop the server with status 1.  Counting only deaths within 2 s
    of the start let a worker slower than that to fail restart for ever."""
    app = app_module(tmp_path, "import os, time\n"
                               f"if {IN_WORKER}:\n    time.sleep(2.1)\n"
                               "from tests.apps import app\n")
    server = start_server("--workers", "3", app=app, cwd=tmp_path, ready=False,
                          env={"TEST_LIFESPAN_FAIL": "1"})
    assert server.wait_exit(timeout=60) == 1
    output = server.output
    assert "5 workers in a row failed to start (see their errors above); stopping the " \
           "server" in output
    assert "before it was ready; starting a new one in 0.1s" in output
    assert "Application startup failed: database is down" in output
    assert output.count("exited with status 1 before it was ready") == 5
    assert "Server ready (3 workers" not in output


def test_a_worker_that_does_not_stop_is_killed(start_server, tmp_path):
    """A worker whose event loop is stuck (a synchronous call in an async view) cannot
    hear SIGTERM: the supervisor kills it past twice the shutdown timeout (plus a margin)
    instead of waiting for ever, and exits 1."""
    app = app_module(tmp_path, "import time\nfrom tests.apps import app as inner\n\n"
                               "async def app(scope, receive, send):\n"
                               "    if scope['type'] == 'http' and scope['path'] == '/block':\n"
                               "        print('app: blocking', flush=True)\n"
                               "        time.sleep(120)\n"
                               "    return await inner(scope, receive, send)\n")
    server = start_server("--workers", "2", "--shutdown-timeout", "0.2", app=app,
                          cwd=tmp_path)
    pids = worker_pids(server)
    request = threading.Thread(target=lambda: pytest.raises(
        httpx.HTTPError, httpx.get, server.url + "/block", timeout=60))
    request.start()
    server.wait_for("app: blocking")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=30) == 1
    assert re.search(r"Worker \d+ did not stop in time; killing it", server.output)
    assert not wait_gone(pids)
    request.join(10)


def test_killing_the_supervisor_stops_its_workers(start_server):
    """kill -9 of the supervisor (the OOM killer, supervisord's SIGKILL): its workers get
    SIGTERM from the kernel (parent-death signal), drain and exit; none is left serving."""
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    server.signal(signal.SIGKILL)
    assert server.wait_exit() == -signal.SIGKILL
    assert not wait_gone(pids)


def test_sigterm_while_workers_start_stops_them(start_server, tmp_path):
    """SIGTERM while the workers are still importing the application: they die of it and
    the supervisor exits 0, without ever saying it is ready."""
    app = app_module(tmp_path, "import os, time\n"
                               f"if {IN_WORKER}:\n    print('app: importing', flush=True)\n"
                               "    time.sleep(120)\n"
                               "from tests.apps import app\n")
    server = start_server("--workers", "2", app=app, cwd=tmp_path, ready=False)
    lines_matching(server, r"app: importing", count=2)
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "Server ready" not in server.output


def test_systemd_socket_activation_with_workers(start_server, tmp_path, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    launcher = systemd_launcher(tmp_path, listener.fileno())
    monkeypatch.setattr(sys, "executable", launcher)
    server = start_server("--workers", "2", "-e", "systemd:domain=INET:name=web",
                          pass_fds=(listener.fileno(),), count=0)
    listener.close()
    pids = worker_pids(server)
    assert "Listening on inherited fd 3" in server.output
    assert pids_answering(f"http://127.0.0.1:{port}", pids) == pids


@pytest.mark.parametrize("command", ["daphne", "manage.py daphne"])
def test_sigterm_during_startup_stops_pid_1(tmp_path, command):
    """As PID 1 in a container the kernel drops a signal left to its default action: a
    SIGTERM (docker stop) while the application imported was lost, the server started, and
    docker killed it 10 s later. It now exits at once."""
    import shutil
    import subprocess

    from tests.conftest import ROOT

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run(
            [unshare, "--pid", "--fork", "--map-root-user", "true"]).returncode != 0:
        pytest.skip("needs unshare and user/PID namespaces to run a PID 1")
    app = app_module(tmp_path, "import time\nprint('app: importing', flush=True)\n"
                               "time.sleep(120)\nfrom tests.apps import app\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}",
               EXAMPLE_DB=str(tmp_path / "db.sqlite3"))
    proc = subprocess.Popen(
        [unshare, "--pid", "--fork", "--map-root-user", "--kill-child", sys.executable,
         *(["-m", "django_daphne", "-p", "0", app] if command == "daphne" else
           [str(ROOT / "manage.py"), "daphne", "-p", "0", "--skip-checks",
            "--application", app])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert proc.stdout.readline().strip() == "app: importing"
        children = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
        assert "Server ready" not in proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()


def test_workers_keep_the_unix_socket_mode_asked_for(start_server, tmp_path):
    """unix:...:mode=600 with --workers: each worker adopting the socket made it 0666."""
    path = str(tmp_path / "private.sock")
    server = start_server("--workers", "2", "-e", f"unix:{path}:mode=600", count=0)
    pids = worker_pids(server)
    seen = set()
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        for _ in range(400):  # until both workers served it, so both have adopted it
            if seen == pids:
                break
            seen.add(int(client.get("http://localhost/pid",
                                    headers={"Connection": "close"}).text))
    assert seen == pids
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def test_process_titles_tell_the_supervisor_and_each_worker_apart(start_server):
    server = start_server("--workers", "2")
    pids = worker_pids(server)
    assert cmdline(server.proc.pid).startswith("django-daphne: supervisor (2 workers): ")
    titles = sorted(cmdline(pid).split(":")[1].strip() for pid in pids)
    assert titles == ["worker 0 (generation 1)", "worker 1 (generation 1)"]
    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    match = server.wait_for(r"Reloaded: workers ([\d, ]+) serve")
    assert server.lines.index(match.string) >= mark
    new = [int(pid) for pid in match.group(1).split(", ")]
    assert sorted(cmdline(pid).split(":")[1].strip() for pid in new) == [
        "worker 0 (generation 2)", "worker 1 (generation 2)"]


def test_without_setproctitle_nothing_breaks(start_server, tmp_path):
    (tmp_path / "setproctitle.py").write_text("raise ImportError('not installed here')\n")
    server = start_server("--workers", "2", env={"PYTHONPATH": str(tmp_path)})
    pids = worker_pids(server)
    assert "django-daphne:" not in cmdline(server.proc.pid)
    assert all("django-daphne:" not in cmdline(pid) for pid in pids)
    assert httpx.get(server.url + "/pid").status_code == 200

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
    """Wait until ``count`` output lines match ``pattern``; return them."""
    regex = re.compile(pattern)
    with server.cond:
        while True:
            found = [line for line in server.lines if regex.search(line)]
            if len(found) >= count:
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
    server = start_server("--workers", "2", "-e", "nosuch:1", ready=False)
    assert server.wait_exit() == 1
    assert "--workers cannot share endpoint 'nosuch:1'" in server.output


def app_module(tmp_path, source: str) -> str:
    (tmp_path / "opsapp.py").write_text(source)
    return "opsapp:app"


IN_WORKER = 'os.environ.get("DJANGO_DAPHNE_WORKER_ENDPOINTS")'


def test_sigterm_during_startup_stops_pid_1(tmp_path):
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
               PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    proc = subprocess.Popen(
        [unshare, "--pid", "--fork", "--map-root-user", "--kill-child",
         sys.executable, "-m", "django_daphne", "-p", "0", app],
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

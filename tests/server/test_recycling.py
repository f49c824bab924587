"""Recycling workers by memory (--max-worker-memory) and by age (--max-worker-lifetime), as
--max-requests does: the successor starts first, the old worker drains once it is ready,
nothing in flight is dropped.  Real processes, real signals, real sockets; synchronised on
the log, on responses and on pids, never on sleeps."""

from __future__ import annotations

import io
import re
import signal
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import docutils.core
import httpx
import pytest

from django_daphne.core.config import Config
from django_daphne.core.options import OPTIONS_BY_NAME
from django_daphne.server.supervisor import Supervisor
from django_daphne.server.worker_process import Generation, Worker
from tests.conftest import ROOT
from tests.server.test_operations import NotifySocket
from tests.server.test_supervisor_faults import BROKEN, ENV, get, settled_on, started
from tests.server.test_supervisor_faults import gate as gate  # the fixture
from tests.server.test_workers import alive, cmdline, lines_matching, worker_pids

# "/" answers VERSION:PID; "/grow" keeps GROW_MIB more of memory, and says so, first
APP = '''
import os, socket
from tests.lifespan import serve_lifespan
VERSION = {version!r}
{gate}
HELD = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await serve_lifespan(receive, send)
    if scope["path"] == "/grow":
        HELD.append(b"\\x01" * ({grow} << 20))  # written, so resident
        print(f"app: {{os.getpid()}} holds {{len(HELD) * {grow}}} MiB more", flush=True)
    body = f"{{VERSION}}:{{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", b"%d" % len(body))]}})
    await send({{"type": "http.response.body", "body": body}})
'''

# a worker of this application uses some 55 MiB as it starts: two growths of GROW_MIB put
# it over CEILING, one does not
GROW_MIB = 64
CEILING = "150"


def write_app(directory, version: str, gate: str = "") -> None:
    (directory / "growapp.tmp").write_text(APP.format(version=version, gate=gate,
                                                      grow=GROW_MIB))
    (directory / "growapp.tmp").replace(directory / "growapp.py")


def start(start_server, tmp_path, *args: str, version: str = "1", gate: str = "",
          env: dict | None = None, ready: bool = True):
    write_app(tmp_path, version, gate)
    return start_server(*args, app="growapp:app", cwd=tmp_path, env={**ENV, **(env or {})},
                        ready=ready)


def pid_of(body: str) -> int:
    return int(body.split(":")[1])


def grow_one_over(server) -> int:
    """/grow over new connections until one worker has grown twice (over CEILING): its
    pid.  (Which worker a new connection reaches is up to the kernel.)"""
    grown: Counter[int] = Counter()
    for _ in range(100):
        pid = pid_of(get(server, "/grow"))
        grown[pid] += 1
        if grown[pid] == 2:
            return pid
    pytest.fail(f"no worker was reached twice: {grown}")


def over_line(pid: int) -> str:
    return (rf"Worker {pid} \(slot (\d+)\) uses (\d+) MiB, over --max-worker-memory "
            rf"{CEILING} after serving \d+ s; starting its successor")


def memory_checks(server, count: int) -> dict[int, int]:
    """Until the supervisor has measured the workers ``count`` more times (its debug line,
    at -v 2): what the last time measured, pid -> MiB."""
    pattern = r"Worker memory \(--max-worker-memory \d+\): "
    last = lines_matching(server, pattern, len(re.findall(pattern, server.output)) + count)
    measured = last[-1].split("): ", 1)[1]
    return {int(pid): int(mib) for pid, mib in re.findall(r"(\d+) (\d+) MiB", measured)}


class Load:
    """Clients sending GET / until stopped, each over a keep-alive connection that it
    replaces every ``per_connection`` requests (a new connection may reach another worker:
    the kernel spreads them): the pid of every answer, and every request that failed."""

    def __init__(self, server, clients: int = 4, per_connection: int = 10) -> None:
        self.per_connection = per_connection
        self.url = server.url
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.pids: list[int] = []
        self.failed: list[str] = []
        self.retried = 0
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            with httpx.Client(base_url=self.url, timeout=30) as client:
                self._send(client)

    def _send(self, client: httpx.Client) -> None:
        for _ in range(self.per_connection):
            if self.stop.is_set():
                return
            try:
                try:
                    response = client.get("/")
                except httpx.RemoteProtocolError:
                    # an idle keep-alive connection that a draining worker closed before
                    # any answer: RFC 9112 9.3.1 lets a client retry (browsers do)
                    with self.cond:
                        self.retried += 1
                    response = client.get("/")
            except httpx.HTTPError as exc:
                with self.cond:
                    self.failed.append(repr(exc))
                continue
            with self.cond:
                if response.status_code == 200:
                    self.pids.append(pid_of(response.text))
                else:
                    self.failed.append(f"{response.status_code} {response.text!r}")
                self.cond.notify_all()

    def wait_answered_by(self, pids: set[int], since: int = 0) -> int:
        """Until every pid of ``pids`` has answered (after the ``since``-th answer): how
        many answers there are then."""
        with self.cond:
            assert self.cond.wait_for(lambda: pids <= set(self.pids[since:]), 30), (
                set(self.pids[since:]), self.failed)
            return len(self.pids)

    def wait_answers(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.pids) >= count, 30), self.failed

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


# -- memory: replaced successor first, under load


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_over_the_memory_ceiling_is_replaced_without_a_failed_request(
        start_server, tmp_path, workers):
    notify = NotifySocket(tmp_path)
    try:
        server = start(start_server, tmp_path, "--workers", str(workers),
                       "--max-worker-memory", CEILING, env={"NOTIFY_SOCKET": notify.path})
        pids = worker_pids(server)
        notify.next("READY")
        load = Load(server)
        try:
            load.wait_answered_by(pids)
            victim = grow_one_over(server)
            slot = server.wait_for(over_line(victim)).group(1)
            server.wait_for(rf"Stopping worker {victim} gracefully \(--max-worker-memory\)")
            successor = started(server)[-1]
            serving = pids - {victim} | {successor}
            # the new worker answers, while requests go on being sent all along
            answered = load.wait_answered_by({successor})
            server.wait_for(rf"Worker {victim} stopped$")
            load.wait_answered_by(serving, since=answered)
        finally:
            load.finish()
        assert not load.failed, load.failed
        assert len(load.pids) > 50
        settled_on(server, serving)
        assert started(server) == [*started(server)[:workers], successor]  # one successor
        # systemctl status names the workers that serve; ps tells them apart
        while notify.next("STATUS")["STATUS"] != f"{workers} workers: " + ", ".join(
                map(str, sorted(serving))):
            pass
        assert f"worker {slot} (generation 1): " in cmdline(successor)
        print(f"memory recycle under load ({workers} workers): {len(load.pids)} answered, "
              f"retried on a closed keep-alive connection {load.retried}")
    finally:
        notify.close()


def test_a_worker_that_grows_on_while_its_successor_starts_gets_one_successor(
        start_server, tmp_path, gate):
    server = start(start_server, tmp_path, "--workers", "1", "--max-worker-memory",
                   CEILING, "-v", "2", gate=gate.code, ready=False)
    gate.wait(1)
    gate.release()
    [first] = worker_pids(server.wait_ready())
    assert grow_one_over(server) == first
    server.wait_for(over_line(first))
    gate.wait(1)  # its successor imports, held there
    for _ in range(2):  # the worker grows on, far over the ceiling
        assert get(server, "/grow") == f"1:{first}"
    server.wait_for(rf"app: {first} holds {4 * GROW_MIB} MiB more")
    # measured three times more, over the ceiling each time
    assert memory_checks(server, 3)[first] > int(CEILING)
    assert len(started(server)) == 2, server.output  # no second successor
    assert len(re.findall(over_line(first), server.output)) == 1
    gate.release()
    server.wait_for(rf"Stopping worker {first} gracefully \(--max-worker-memory\)")
    successor = started(server)[-1]
    settled_on(server, {successor})
    assert get(server) == f"1:{successor}"


# -- memory: a ceiling below what the application needs


def test_a_worker_over_the_ceiling_as_it_starts_is_not_replaced_in_a_loop(start_server,
                                                                         tmp_path):
    """Every worker of the application is larger than the ceiling as it starts, so each
    successor would be replaced in turn, for ever.  One error names the option and the
    size; the workers serve on, and are not replaced for their memory."""
    server = start(start_server, tmp_path, "--workers", "2", "--max-worker-memory", "10",
                   "-v", "2")
    pids = worker_pids(server)
    error = server.wait_for(r"ERROR .*Worker (\d+) \(slot \d\) uses (\d+) MiB as it starts, "
                            r"already over --max-worker-memory 10 \(MAX_WORKER_MEMORY\): "
                            r"the ceiling is below what the application needs")
    assert int(error.group(1)) in pids and int(error.group(2)) > 10
    # the window: five more measurements, each worker over the ceiling in the last
    measured = memory_checks(server, 5)
    assert set(measured) == pids and min(measured.values()) > 10, measured
    assert len(started(server)) == 2, server.output
    assert "starting its successor" not in server.output
    # a worker added to the same generation: no second error, and no loop either
    server.signal(signal.SIGTTIN)
    lines_matching(server, r"Started worker \d+$", 3)
    added = started(server)[-1]
    server.wait_for(rf"Worker {added} ready")
    assert set(memory_checks(server, 5)) == pids | {added}
    assert len(started(server)) == 3
    assert server.output.count("as it starts, already over --max-worker-memory") == 1
    seen = {pid_of(get(server)) for _ in range(60)}
    assert seen <= pids | {added} and all(alive(pid) for pid in pids | {added})


# -- memory: a successor that fails to start


def test_a_failed_successor_leaves_the_worker_serving_and_is_retried(start_server,
                                                                    tmp_path):
    """Broken code on disk when a worker goes over the ceiling: its successor fails, the
    worker serves on, and the next successor starts after --max-requests' growing delay,
    until the code is fixed."""
    server = start(start_server, tmp_path, "--workers", "1", "--max-worker-memory", CEILING)
    [first] = worker_pids(server)
    write_app(tmp_path, "2", gate=BROKEN)
    assert grow_one_over(server) == first
    server.wait_for(over_line(first))
    for delay in ("1.0", "2.0"):
        server.wait_for(rf"The successor \d+ of worker {first} exited with status 1 before "
                        rf"it was ready; worker {first} goes on serving, and a new "
                        rf"successor starts in {delay}s", timeout=30)
        assert get(server) == f"1:{first}"
    write_app(tmp_path, "3")
    server.wait_for(rf"Stopping worker {first} gracefully \(--max-worker-memory\)",
                    timeout=60)
    successor = started(server)[-1]
    settled_on(server, {successor})
    assert get(server) == f"3:{successor}"
    assert "workers in a row failed to start" not in server.output  # not the start backoff


# -- memory: SIGHUP during a recycle


@pytest.mark.parametrize("order", ["successor-ready-first", "reload-ready-first",
                                   "over-during-reload"])
def test_sighup_during_a_memory_recycle_ends_on_one_generation(start_server, tmp_path,
                                                               gate, order):
    """A reload and a memory recycle at once, each way they can meet: the successor ready
    before the new generation (it takes the slot, then is reloaded), the new generation
    ready first (the starting successor is retired with the old generation), or a worker
    going over the ceiling during a reload (no successor starts: the reload replaces it).
    Each ends with the new generation alone serving the new code."""
    server = start(start_server, tmp_path, "--workers", "2", "--max-worker-memory", CEILING,
                   "--shutdown-timeout", "1", "-v", "2", gate=gate.code, ready=False)
    gate.wait(2)
    gate.release()
    worker_pids(server.wait_ready())
    if order != "over-during-reload":
        victim = grow_one_over(server)
        server.wait_for(over_line(victim))
        gate.wait(1)  # the successor imports, held there
    write_app(tmp_path, "2", gate=gate.code)
    server.signal(signal.SIGHUP)
    server.wait_for(r"Received SIGHUP: starting 2 new workers")
    if order == "over-during-reload":
        gate.wait(2)
        victim = grow_one_over(server)
        assert memory_checks(server, 3)[victim] > int(CEILING)
        assert "starting its successor" not in server.output
        gate.release()
    else:
        gate.wait(3)
        successor = started(server)[2]
        # the successor reached the gate before SIGHUP: it waits first
        successor_import, new_imports = gate.waiting[:1], gate.waiting[1:]
        if order == "successor-ready-first":
            gate.waiting = successor_import
            gate.release()
            server.wait_for(rf"Stopping worker {victim} gracefully \(--max-worker-memory\)")
            gate.waiting = new_imports
        else:
            gate.waiting = new_imports
            gate.release()
            server.wait_for(rf"Stopping worker {successor} gracefully \(reloaded\)")
            gate.waiting = successor_import  # (it died of SIGTERM while importing)
        gate.release()
    reloaded = server.wait_for(r"Reloaded: workers ([\d, ]+) serve")
    serving = {int(pid) for pid in reloaded.group(1).split(", ")}
    settled_on(server, serving)
    assert not alive(victim)
    answers = {get(server) for _ in range(20)}
    assert {answer.split(":")[0] for answer in answers} == {"2"}
    assert {pid_of(answer) for answer in answers} <= serving
    assert sorted(cmdline(pid).split(":")[1].strip() for pid in serving) == [
        "worker 0 (generation 2)", "worker 1 (generation 2)"]


# -- memory: where it cannot be measured


def test_max_worker_memory_is_refused_where_proc_is_missing(start_server, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import django_daphne.server.worker_process as wp\nwp.PROC = '/no/proc/here'\n")
    server = start(start_server, tmp_path, "--workers", "2", "--max-worker-memory", "500",
                   env={"PYTHONPATH": f"{ROOT}:{tmp_path}"}, ready=False)
    assert server.wait_exit() == 1
    assert ("--max-worker-memory (MAX_WORKER_MEMORY) needs /proc/PID/statm to measure each "
            "worker's memory, and this system has no such file") in server.output
    assert "Listening on" not in server.output and "Started worker" not in server.output


# -- lifetime


def test_workers_past_their_lifetime_are_replaced_while_requests_go_on(start_server,
                                                                      tmp_path):
    server = start(start_server, tmp_path, "--workers", "2", "--max-worker-lifetime", "2",
                   "--max-worker-lifetime-jitter", "1")
    pids = worker_pids(server)
    load = Load(server)
    try:
        load.wait_answered_by(pids)
        for pid in pids:  # each of the first workers is replaced in turn, successor first
            server.wait_for(rf"Worker {pid} \(slot \d\) has served \d+ s, past "
                            r"--max-worker-lifetime 2 \(plus its jitter\); starting its "
                            r"successor", timeout=30)
            server.wait_for(rf"Stopping worker {pid} gracefully \(--max-worker-lifetime\)",
                            timeout=30)
        for pid in pids:
            server.wait_for(rf"Worker {pid} stopped$")
        mark = len(load.pids)
        load.wait_answers(mark + 100)  # answered by their successors (and theirs) since
    finally:
        load.finish()
    assert not load.failed, load.failed
    assert set(load.pids[mark:]) - pids, server.output
    recycled = re.findall(r"gracefully \(--max-worker-lifetime\)", server.output)
    print(f"lifetime recycles under load: {len(recycled)} workers replaced, "
          f"{len(load.pids)} answered, retried {load.retried}")


def test_the_lifetime_jitter_spreads_workers_started_together():
    """Each worker's lifetime is --max-worker-lifetime plus its own random share of the
    jitter, drawn as it becomes ready: workers ready together are not retired together."""
    config = Config.build(command_line={"workers": "8", "max_worker_lifetime": "100",
                                        "max_worker_lifetime_jitter": "50"})
    supervisor = Supervisor(config)
    generation = Generation(1)
    lifetimes = []
    for slot in range(8):
        worker = Worker(SimpleNamespace(pid=10_000 + slot), generation, slot, -1, 0.0)
        worker.pipe = None
        generation.slots[slot] = worker
        supervisor._became_ready(worker)
        assert worker.ready_at is not None and worker.retire_at is not None
        lifetimes.append(worker.retire_at - worker.ready_at)
    assert all(100 <= lifetime <= 150 for lifetime in lifetimes), lifetimes
    assert len(set(lifetimes)) == 8, lifetimes
    without = Supervisor(Config.build(command_line={"workers": "2",
                                                    "max_worker_lifetime": "100"}))
    worker = Worker(SimpleNamespace(pid=10_100), Generation(1), 0, -1, 0.0)
    worker.pipe = None
    without._became_ready(worker)
    assert worker.retire_at is not None and worker.ready_at is not None
    assert worker.retire_at - worker.ready_at == 100


# -- the documentation


def test_the_recycling_howto_is_valid_and_names_every_option():
    text = (Path(ROOT) / "docs" / "howto" / "recycling.rst").read_text()
    warnings = io.StringIO()
    docutils.core.publish_string(
        text, writer="null",
        settings_overrides={"warning_stream": warnings, "report_level": 1, "halt_level": 5})
    assert warnings.getvalue() == ""
    assert "toctree" not in text
    for name in ("max_requests", "max_requests_jitter", "max_worker_memory",
                 "max_worker_lifetime", "max_worker_lifetime_jitter"):
        option = OPTIONS_BY_NAME[name]
        assert option.flag in text and f"``{option.setting}``" in text, name


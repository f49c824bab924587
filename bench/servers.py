"""The servers under test: how each is started, and a handle on the running process.

Every server runs as one process (one worker) serving ``bench.app:app`` with its access log
off, pinned to one CPU where the machine has two or more; a workload may ask for another
launch (TLS, the Django example project, two workers unpinned, a fresh process).
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / "bench" / ".venv-peers"
APP = "bench.app:app"
DJANGO_APP = "example_project.asgi:application"
DJANGO_SETTINGS = "bench.django_settings"  # the example project's settings, DEBUG off


def main_python() -> str:
    """The interpreter with django-daphne installed: the project's .venv, else this one."""
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def peers_bin(name: str) -> str:
    return str(PEERS_VENV / "bin" / name)


@dataclass(frozen=True)
class Launch:
    """How a server is started for a group of workloads.

    Workloads that share a launch share one server start per round; a workload that needs
    TLS, the Django project, a fresh process or several workers gets a start of its own.
    """

    kind: str = "plain"  # a name for the log lines
    app: str = APP
    tls: bool = False
    workers: int = 1
    pinned: bool = True  # on the server's CPU; False lets the workers use every CPU
    ready_path: str = "/"  # polled until it answers 200
    warmup: bool = True  # --warmup seconds of keep-alive load on ready_path before measuring
    settings: str | None = None  # DJANGO_SETTINGS_MODULE
    redis: bool = False  # the application's channel layer is on the run's redis-server


PLAIN = Launch()
TLS_LAUNCH = Launch(kind="tls", tls=True)
DJANGO_LAUNCH = Launch(kind="django", app=DJANGO_APP, ready_path="/json/",
                       settings=DJANGO_SETTINGS)
# A fresh process that has served nothing but one WebSocket, for its memory baseline.
MEMORY_LAUNCH = Launch(kind="memory", warmup=False)
# The Channels group application (broadcast.py), on the in-memory layer and on Redis.
BROADCAST_APP = "bench.broadcast:application"
BROADCAST_SETTINGS = "bench.broadcast_settings"
BROADCAST_LAUNCH = Launch(kind="broadcast", app=BROADCAST_APP, settings=BROADCAST_SETTINGS,
                          warmup=False)
BROADCAST_REDIS_LAUNCH = Launch(kind="broadcast-redis", app=BROADCAST_APP,
                                settings=BROADCAST_SETTINGS, warmup=False, redis=True)
# the benchmark's applications, copied beside every copy of django-daphne that it runs
BENCH_APPS = ("__init__.py", "app.py", "django_settings.py", "broadcast.py",
              "broadcast_settings.py")
WORKERS_LAUNCH = Launch(kind="workers", workers=2, pinned=False)


@dataclass(frozen=True)
class Start:
    """One server start: the port, the launch, and the TLS files when it serves TLS."""

    port: int
    launch: Launch
    key: Path | None = None
    cert: Path | None = None

    @property
    def app(self) -> str:
        return self.launch.app

    @property
    def workers(self) -> int:
        return self.launch.workers

    @property
    def twisted_ssl(self) -> str:
        """A Twisted ``ssl:`` endpoint string (django-daphne and Daphne take ``-e``)."""
        return (f"ssl:{self.port}:privateKey={self.key}:certKey={self.cert}"
                ":interface=127.0.0.1")


@dataclass(frozen=True)
class ServerSpec:
    """One server: its command line for a start, and what it can serve (and why not)."""

    name: str
    label: str
    argv: Callable[[Start], list[str]]
    python: Callable[[], str]
    distribution: str
    features: frozenset[str] = field(default_factory=frozenset)
    lacks: dict[str, str] = field(default_factory=dict)  # feature -> why it is n/a
    source: Path | None = None  # run from this copy instead of the run's snapshot

    def version(self) -> str:
        code = (
            "import importlib.metadata as m, sys; "
            f"print(m.version({self.distribution!r}))"
        )
        try:
            out = subprocess.run(
                [self.python(), "-c", code], capture_output=True, text=True, timeout=30
            )
        except OSError:
            return "not installed"
        return out.stdout.strip() if out.returncode == 0 else "not installed"

    def installed(self) -> bool:
        return Path(self.python()).exists() and self.version() != "not installed"

    def why_not(self, feature: str) -> str:
        return self.lacks.get(feature, f"{self.label} does not support it")


# What each server can serve, each checked by hand against the version in the peers'
# virtualenv (h2load for HTTP/2 over TLS and h2c, wsload for WebSocket).  A workload names
# the feature it needs; a server without it prints n/a with the reason in ``lacks``.
HTTP1 = "http1"
H2_TLS = "h2-tls"
H2C = "h2c"
WEBSOCKET = "websocket"
DJANGO = "django"
WORKERS = "workers"


def _django_daphne(s: Start) -> list[str]:
    argv = [main_python(), "-m", "django_daphne", "-v", "0"]
    if s.launch.tls:
        argv += ["-e", s.twisted_ssl]
    else:
        argv += ["-b", "127.0.0.1", "-p", str(s.port)]
    if s.workers > 1:
        argv += ["--workers", str(s.workers)]
    return [*argv, s.app]


def _django_daphne_metrics(s: Start) -> list[str]:
    """django-daphne with its metrics listener on (a free port): the cost of metrics."""
    argv = _django_daphne(s)
    return [*argv[:-1], "--metrics-endpoint", "127.0.0.1:0", argv[-1]]


def _daphne(s: Start) -> list[str]:
    bind = ["-e", s.twisted_ssl] if s.launch.tls else ["-b", "127.0.0.1", "-p", str(s.port)]
    return [peers_bin("daphne"), *bind, "-v", "0", s.app]


def _uvicorn(s: Start) -> list[str]:
    argv = [peers_bin("uvicorn"), "--host", "127.0.0.1", "--port", str(s.port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]
    if s.launch.tls:
        argv += ["--ssl-keyfile", str(s.key), "--ssl-certfile", str(s.cert)]
    if s.workers > 1:
        argv += ["--workers", str(s.workers)]
    return [*argv, s.app]


def _hypercorn(s: Start) -> list[str]:
    argv = [peers_bin("hypercorn"), "-b", f"127.0.0.1:{s.port}", "-k", "uvloop",
            "--log-level", "warning", "-w", str(s.workers)]
    if s.launch.tls:
        argv += ["--certfile", str(s.cert), "--keyfile", str(s.key)]
    return [*argv, s.app]


def _granian(s: Start) -> list[str]:
    argv = [peers_bin("granian"), "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(s.port), "--workers", str(s.workers), "--no-access-log",
            "--log-level", "warning"]
    if s.launch.tls:  # its key must be PKCS#8, as tests/certs.py writes it
        argv += ["--ssl-certificate", str(s.cert), "--ssl-keyfile", str(s.key)]
    return [*argv, s.app]


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            name="django-daphne",
            label="django-daphne",
            argv=_django_daphne,
            python=main_python,
            distribution="django-daphne",
            features=frozenset({HTTP1, H2_TLS, H2C, WEBSOCKET, DJANGO, WORKERS}),
        ),
        ServerSpec(
            name="django-daphne-metrics",
            label="django-daphne +metrics",
            argv=_django_daphne_metrics,
            python=main_python,
            distribution="django-daphne",
            features=frozenset({HTTP1, H2_TLS, H2C, WEBSOCKET, DJANGO, WORKERS}),
        ),
        ServerSpec(
            name="daphne",
            label="Daphne",
            argv=_daphne,
            python=lambda: peers_bin("python"),
            distribution="daphne",
            features=frozenset({HTTP1, H2_TLS, WEBSOCKET, DJANGO}),
            lacks={
                H2C: "no h2c: Daphne speaks HTTP/2 only after TLS ALPN; a prior-knowledge "
                     "h2c connection gets no response (h2load: 0 requests done)",
                WORKERS: "Daphne has no workers option (one process per port)",
            },
        ),
        ServerSpec(
            name="uvicorn",
            label="Uvicorn",
            argv=_uvicorn,
            python=lambda: peers_bin("python"),
            distribution="uvicorn",
            features=frozenset({HTTP1, WEBSOCKET, DJANGO, WORKERS}),
            lacks={
                H2_TLS: "no HTTP/2 in Uvicorn: over TLS it offers no h2 by ALPN (h2load: "
                        "no protocol negotiated, HTTP/1.1)",
                H2C: "no HTTP/2 in Uvicorn: the h2c preface is refused as an invalid "
                     "HTTP/1.1 request",
            },
        ),
        ServerSpec(
            name="hypercorn",
            label="Hypercorn",
            argv=_hypercorn,
            python=lambda: peers_bin("python"),
            distribution="hypercorn",
            features=frozenset({HTTP1, H2_TLS, H2C, WEBSOCKET, DJANGO, WORKERS}),
        ),
        ServerSpec(
            name="granian",
            label="Granian",
            argv=_granian,
            python=lambda: peers_bin("python"),
            distribution="granian",
            features=frozenset({HTTP1, H2_TLS, H2C, WEBSOCKET, DJANGO, WORKERS}),
        ),
    )
}


# run only when named in --servers (beside django-daphne, for the A/B of metrics on and off)
NOT_BY_DEFAULT = frozenset({"django-daphne-metrics"})


def snapshot(dest: Path) -> str:
    """Copy django_daphne/, the example project and the benchmark's apps to ``dest``; say
    which code that is.

    Every server runs from this copy (its directory first on the import path, ahead of the
    editable install), so commits landing in the working tree during a long run cannot mix
    two versions of django-daphne into one table.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3", "staticfiles")
    shutil.copytree(ROOT / "django_daphne", dest / "django_daphne", ignore=ignore)
    shutil.copytree(ROOT / "example_project", dest / "example_project", ignore=ignore)
    (dest / "bench").mkdir(parents=True)
    for name in BENCH_APPS:
        shutil.copy2(ROOT / "bench" / name, dest / "bench" / name)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "django_daphne"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown commit"
    if not rev:
        return "unknown commit"
    return f"git {rev}" + (" + uncommitted changes in django_daphne/" if dirty.strip() else "")


def baseline_spec(rev: str, dest: Path) -> ServerSpec:
    """django-daphne as it was at commit ``rev``, copied to ``dest`` (git archive), as a
    server of its own in the same run: old and new side by side, same machine, same load."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "django_daphne", "example_project"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # the applications are the working tree's: the same load on old and new
    (dest / "bench").mkdir()
    for name in BENCH_APPS:
        shutil.copy2(ROOT / "bench" / name, dest / "bench" / name)
    base = SERVERS["django-daphne"]
    return dataclasses.replace(base, name=f"django-daphne@{rev}",
                               label=f"django-daphne @{rev}", source=dest)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerError(RuntimeError):
    """The server did not start, or stopped serving."""


class ServerProcess:
    """A started server: its own process group, its output in a log file."""

    def __init__(self, spec: ServerSpec, launch: Launch, cpu: int | None, log_path: Path,
                 source: Path = ROOT, certificate: tuple[Path, Path] | None = None,
                 redis_url: str | None = None) -> None:
        self.spec = spec
        self.launch = launch
        self.port = free_port()
        self.log_path = log_path
        key, cert = certificate if launch.tls and certificate else (None, None)
        if launch.tls and key is None:
            raise ServerError(f"{spec.label}: a TLS start needs a certificate")
        argv = spec.argv(Start(self.port, launch, key, cert))
        if cpu is not None and launch.pinned:
            argv = ["taskset", "-c", str(cpu), *argv]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(source) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("VIRTUAL_ENV", None)
        if launch.settings:
            env["DJANGO_SETTINGS_MODULE"] = launch.settings
        if launch.redis:
            if redis_url is None:
                raise ServerError(f"{spec.label}: a Redis start needs the run's redis-server")
            env["BENCH_REDIS_URL"] = redis_url
        self._log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=source, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"{'https' if self.launch.tls else 'http'}://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the launch's ready path answers 200 (every server logs readiness
        differently)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.spec.label} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                status, _ = request(self.port, "GET", self.launch.ready_path, timeout=2.0,
                                    tls=self.launch.tls)
            except OSError:
                status = None
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"{self.spec.label} not ready after {timeout}s:\n"
                                  f"{self.output()}")
            time.sleep(0.05)  # polling a port that is not listening yet

    def pids(self) -> list[int]:
        """The server process and all its descendants (Granian and Hypercorn fork)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in _listdir(f"/proc/{pid}/task"):
                try:
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                except OSError:
                    continue
                todo.extend(int(child) for child in children)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process tree so far."""
        return sum(self.cpu_by_pid().values())

    def cpu_by_pid(self) -> dict[int, float]:
        """User + system CPU time so far of each process of the tree."""
        seconds = {}
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        return seconds

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0,
    tls: bool = False,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a fresh connection (TLS unverified: the benchmark's own
    self-signed certificate): (status, body)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()

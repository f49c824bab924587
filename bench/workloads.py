"""The workloads: what load each puts on a server, and how one measurement is taken.

A measured workload checks the server answers correctly (one request by hand), then runs
``wrk`` pinned to its own CPU and reads back the requests, latency percentiles and errors
through a Lua ``done`` hook, with the CPU time used by ``wrk``, by the server and by
everything else on the machine over the same interval.

A workload whose ``measure`` is None is listed with "n/a" until it is built.  To add one
(HTTP/2 with h2load, WebSocket echo, ...): write a ``measure`` function returning a
``Measurement`` and name the server feature it needs.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import app as bench_app
from .servers import DJANGO, H2_TLS, H2C, HTTP1, WEBSOCKET, ServerProcess, request

MIB = 1024 * 1024


@dataclass
class Measurement:
    """One round of one workload on one server."""

    value: float  # requests (or messages) per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    wrk_cpu: float | None = None  # share of one CPU used by the load generator
    server_cpu: float | None = None  # share of one CPU used by the server's processes
    other_cpu: float | None = None  # CPUs' worth used by everything else meanwhile
    rss_mib: float | None = None  # server's resident memory after the run
    attempts: int = 1  # how many times it was measured before the machine was quiet enough


@dataclass
class Context:
    """What every measurement needs to know about the run."""

    duration: float
    loadgen_cpu: int | None
    tmpdir: Path


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    unit: str
    needs: str
    measure: Callable[[Context, ServerProcess], Measurement] | None = None
    pending: str = ""  # why there is no measurement yet
    higher_is_better: bool = True


# The Lua hook that prints wrk's own counters as one line we can parse exactly.
DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH %d %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""
UPLOAD_LUA = """
wrk.method = "POST"
wrk.path = "/upload"
wrk.body = string.rep("x", %d)
wrk.headers["Content-Type"] = "application/octet-stream"
""" % MIB


def run_wrk(
    ctx: Context,
    server: ServerProcess,
    path: str,
    connections: int,
    headers: tuple[str, ...] = (),
    lua: str = "",
    duration: float | None = None,
) -> Measurement:
    """Run wrk against the server for the context's duration; wrk's figures and CPU use."""
    script = Path(tempfile.mkstemp(suffix=".lua", dir=ctx.tmpdir)[1])
    script.write_text(lua + DONE_LUA)
    seconds = max(1, round(duration if duration is not None else ctx.duration))
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"http://127.0.0.1:{server.port}{path}")
    if ctx.loadgen_cpu is not None:
        argv = ["taskset", "-c", str(ctx.loadgen_cpu), *argv]

    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = server.cpu_seconds()
    before_busy, before_steal = machine_cpu_seconds()
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - started
    after_busy, after_steal = machine_cpu_seconds()
    server_cpu = (server.cpu_seconds() - before_server) / wall
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    script.unlink()

    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    n, duration_us, _bytes, p50, p99, connect, read, write, status, timeout = (
        int(x) for x in line.split()[1:]
    )
    wrk_cpu = (
        after_children.ru_utime - before_children.ru_utime
        + after_children.ru_stime - before_children.ru_stime
    ) / wall
    errors = {k: v for k, v in (("connect", connect), ("read", read), ("write", write),
                                ("status", status), ("timeout", timeout)) if v}
    # Everything else: processes other than the server and wrk, plus time the hypervisor
    # took (steal).  Interrupt and softirq time (the loopback traffic itself) is left out.
    others = (after_busy - before_busy) / wall - wrk_cpu - server_cpu
    other_cpu = max(0.0, others) + (after_steal - before_steal) / wall
    return Measurement(
        value=n / (duration_us / 1e6),
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        requests=n,
        errors=errors,
        wrk_cpu=wrk_cpu,
        server_cpu=server_cpu,
        other_cpu=other_cpu,
        rss_mib=server.rss_bytes() / MIB,
    )


def machine_cpu_seconds() -> tuple[float, float]:
    """(user + nice + system, steal) CPU seconds of all CPUs since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[:8])
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / ticks, steal / ticks


def machine_noise(seconds: float = 0.5) -> float:
    """CPUs' worth used by other processes (plus steal) over ``seconds`` while we are idle."""
    busy, steal = machine_cpu_seconds()
    time.sleep(seconds)  # the measuring interval itself
    busy2, steal2 = machine_cpu_seconds()
    return (busy2 - busy + steal2 - steal) / seconds


def expect(server: ServerProcess, method: str, path: str, body: bytes | None,
           want: Callable[[bytes], bool], what: str) -> None:
    """Fail loudly, before any load, if the server does not answer this workload right."""
    status, got = request(server.port, method, path, body)
    if status != 200 or not want(got):
        raise RuntimeError(
            f"{server.spec.label}: {method} {path} answered {status} with "
            f"{len(got)} bytes; expected 200 with {what}"
        )


def keepalive(ctx: Context, server: ServerProcess) -> Measurement:
    expect(server, "GET", "/", None, lambda b: b == bench_app.HELLO, "the hello body")
    return run_wrk(ctx, server, "/", connections=50)


def close(ctx: Context, server: ServerProcess) -> Measurement:
    expect(server, "GET", "/", None, lambda b: b == bench_app.HELLO, "the hello body")
    return run_wrk(ctx, server, "/", connections=50, headers=("Connection: close",))


def upload(ctx: Context, server: ServerProcess) -> Measurement:
    expect(server, "POST", "/upload", b"x" * MIB, lambda b: b == str(MIB).encode(),
           "the body size")
    return run_wrk(ctx, server, "/upload", connections=10, lua=UPLOAD_LUA)


def stream(ctx: Context, server: ServerProcess) -> Measurement:
    size = len(bench_app.CHUNK) * bench_app.CHUNKS
    expect(server, "GET", "/stream", None, lambda b: len(b) == size, f"{size} bytes")
    return run_wrk(ctx, server, "/stream", connections=10)


NOT_BUILT_DD = "django-daphne's HTTP/2 is not built yet"

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("keepalive", "HTTP/1.1 keep-alive, 13-byte response (wrk -c 50 -t 1)",
                 "req/s", HTTP1, keepalive),
        Workload("close", "HTTP/1.1, new connection per request (Connection: close, -c 50)",
                 "req/s", HTTP1, close),
        Workload("upload", "1 MiB request body upload (POST, wrk -c 10)",
                 "req/s", HTTP1, upload),
        Workload("stream", "1 MiB streamed response, 16 x 64 KiB body messages (wrk -c 10)",
                 "req/s", HTTP1, stream),
        Workload("h2-tls", "HTTP/2 over TLS (h2load -c 10 -m 100)", "req/s", H2_TLS,
                 pending="not measured yet: " + NOT_BUILT_DD),
        Workload("h2c", "HTTP/2 cleartext h2c (h2load -c 10 -m 100)", "req/s", H2C,
                 pending="not measured yet: " + NOT_BUILT_DD),
        Workload("ws-echo", "WebSocket echo round trips, 50 clients", "msg/s", WEBSOCKET,
                 pending="not measured yet: django-daphne's WebSocket is not built yet"),
        Workload("ws-idle-memory", "Resident memory holding 2,000 idle WebSockets", "MiB",
                 WEBSOCKET,
                 pending="not measured yet: django-daphne's WebSocket is not built yet",
                 higher_is_better=False),
        Workload("django-json", "Django JSON view through Django's ASGI handler", "req/s",
                 DJANGO,
                 pending="not measured yet: the example project's JSON view does not "
                 "exist yet"),
    )
}

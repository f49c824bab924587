"""The workloads: what load each puts on a server, and how one measurement is taken.

A workload checks the server answers correctly (one request by hand), then runs its load
generator pinned to its own CPU: ``wrk`` for HTTP/1.1 (its exact counters through a Lua
``done`` hook), ``h2load`` for HTTP/2, ``wsload.py`` (this directory) for WebSocket.  Each
measurement also records the CPU time used by the generator, by the server and by everything
else on the machine over the same interval, so the report can say who was the bottleneck.

A workload names the server feature it needs and the launch it needs (plain, TLS, the Django
project, a fresh process, two workers); servers started the same way share one start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import app as bench_app
from .h2check import H2CheckError, h2_get
from .servers import (
    BROADCAST_LAUNCH,
    BROADCAST_REDIS_LAUNCH,
    DJANGO,
    DJANGO_LAUNCH,
    H2_TLS,
    H2C,
    HTTP1,
    MEMORY_LAUNCH,
    PLAIN,
    TLS_LAUNCH,
    WEBSOCKET,
    WORKERS,
    WORKERS_LAUNCH,
    Launch,
    ServerProcess,
    ServerSpec,
    main_python,
    request,
)

MIB = 1024 * 1024
WSLOAD = Path(__file__).resolve().parent / "wsload.py"
IDLE_WEBSOCKETS = 2000
BROADCAST_LISTENERS = 1000
DJANGO_JSON = {"message": "Hello, World!"}


@dataclass
class Measurement:
    """One round of one workload on one server."""

    value: float  # requests (or round trips) per second; KiB for the memory workload
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    load_cpu: float | None = None  # share of one CPU used by the load generator
    load_cpus: float = 1.0  # how many CPUs' worth it could use (its threads, when unpinned)
    server_cpu: float | None = None  # share of one CPU used by the server's processes
    other_cpu: float | None = None  # CPUs' worth used by everything else meanwhile
    rss_mib: float | None = None  # server's resident memory after the run
    attempts: int = 1  # how many times it was measured before the machine was quiet enough
    generator: str = "wrk"
    extra: dict[str, float] = field(default_factory=dict)  # the workload's own figures


@dataclass
class Context:
    """What every measurement needs to know about the run."""

    duration: float
    loadgen_cpu: int | None
    tmpdir: Path
    server_cpu: int | None = None
    source: Path | None = None  # the snapshot the servers run from
    certificate: tuple[Path, Path] | None = None  # (key, cert) for the TLS launches
    redis_url: str | None = None  # the run's redis-server, for the Redis launches
    warmup: float = 0.0

    @property
    def seconds(self) -> int:
        return max(1, round(self.duration))


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    unit: str
    needs: str
    measure: Callable[[Context, ServerProcess], Measurement] | None = None
    pending: str = ""  # why there is no measurement yet
    higher_is_better: bool = True
    launch: Launch = PLAIN
    tool: str = "wrk"  # the program it cannot run without
    # figures of its own in Measurement.extra: (key, column header, digits)
    extra_columns: tuple[tuple[str, str, int], ...] = ()
    note: str = ""  # how it was measured, printed under its table


@contextlib.contextmanager
def start_server(ctx: Context, spec: ServerSpec, launch: Launch) -> Iterator[ServerProcess]:
    """A started, ready (and warmed-up, where the launch asks) server; stopped on exit."""
    log = Path(tempfile.mkstemp(prefix=f"{spec.name}-{launch.kind}-", suffix=".log",
                                dir=ctx.tmpdir)[1])
    source = spec.source or ctx.source
    kwargs = {"source": source} if source else {}
    server = ServerProcess(spec, launch, ctx.server_cpu, log, certificate=ctx.certificate,
                           redis_url=ctx.redis_url, **kwargs)
    try:
        server.wait_ready()
        if ctx.warmup and launch.warmup:
            run_wrk(ctx, server, launch.ready_path, connections=50, duration=ctx.warmup,
                    threads=1 if launch.pinned else 2, pinned=launch.pinned)
        yield server
    finally:
        server.stop()


class Meter:
    """CPU time of the load generator, the server and the whole machine over an interval."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.children = _children_cpu()
        self.by_pid = server.cpu_by_pid()
        self.server_cpu = sum(self.by_pid.values())
        self.busy, self.steal = machine_cpu_seconds()
        self.started = time.monotonic()

    def stop(self, load_cpu_seconds: float | None = None) -> dict[str, float]:
        """Shares of one CPU over the interval; the generator's own figure where given
        (a generator run as a child is counted from its rusage otherwise)."""
        wall = time.monotonic() - self.started
        busy, steal = machine_cpu_seconds()
        by_pid = self.server.cpu_by_pid()
        used = {pid: t - self.by_pid.get(pid, 0.0) for pid, t in by_pid.items()}
        server_cpu = sum(used.values()) / wall
        if load_cpu_seconds is None:
            load_cpu_seconds = _children_cpu() - self.children
        load_cpu = load_cpu_seconds / wall
        # Everything else: processes other than the server and the generator, plus time the
        # hypervisor took (steal).  Interrupt and softirq time (the loopback traffic itself)
        # is left out.
        others = (busy - self.busy) / wall - load_cpu - server_cpu
        return {
            "wall": wall,
            "load_cpu": load_cpu,
            "server_cpu": server_cpu,
            "other_cpu": max(0.0, others) + (steal - self.steal) / wall,
            # how evenly several workers shared the load: 0.5 is even for two
            "busiest_share": max(used.values()) / sum(used.values()) if any(used.values())
            else 0.0,
        }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pin(ctx: Context, argv: list[str], pinned: bool = True) -> list[str]:
    if ctx.loadgen_cpu is not None and pinned:
        return ["taskset", "-c", str(ctx.loadgen_cpu), *argv]
    return argv


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
    threads: int = 1,
    pinned: bool = True,
    per_process: bool = False,
) -> Measurement:
    """Run wrk against the server for the context's duration; wrk's figures and CPU use."""
    script = Path(tempfile.mkstemp(suffix=".lua", dir=ctx.tmpdir)[1])
    script.write_text(lua + DONE_LUA)
    seconds = max(1, round(duration if duration is not None else ctx.duration))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "5s", "-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(server.url + path)

    meter = Meter(server)
    done = subprocess.run(_pin(ctx, argv, pinned), capture_output=True, text=True)
    cpu = meter.stop()
    script.unlink()

    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    n, duration_us, _bytes, p50, p99, connect, read, write, status, timeout = (
        int(x) for x in line.split()[1:]
    )
    errors = {k: v for k, v in (("connect", connect), ("read", read), ("write", write),
                                ("status", status), ("timeout", timeout)) if v}
    return Measurement(
        value=n / (duration_us / 1e6),
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        requests=n,
        errors=errors,
        load_cpu=cpu["load_cpu"],
        server_cpu=cpu["server_cpu"],
        other_cpu=cpu["other_cpu"],
        rss_mib=server.rss_bytes() / MIB,
        extra={"busiest_share": cpu["busiest_share"]} if per_process else {},
        load_cpus=1.0 if pinned and ctx.loadgen_cpu is not None else float(threads),
    )


H2_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s), ", re.M)
H2_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout", re.M)
H2_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
H2_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)


def run_h2load(ctx: Context, server: ServerProcess, path: str = "/") -> Measurement:
    """h2load -c 10 -m 100 for the duration: over TLS (ALPN h2) or h2c by prior knowledge.

    Its own summary gives the requests and errors; its per-request log the latency
    percentiles (it prints only mean and spread).  Refuses a run that did not speak HTTP/2.
    """
    log = Path(tempfile.mkstemp(suffix=".h2load", dir=ctx.tmpdir)[1])
    argv = ["h2load", "-c", "10", "-m", "100", "-D", str(ctx.seconds), "--log-file",
            str(log), server.url + path]
    meter = Meter(server)
    done = subprocess.run(_pin(ctx, argv), capture_output=True, text=True)
    cpu = meter.stop()
    out = done.stdout + done.stderr
    want = "h2" if server.launch.tls else "h2c"
    protocol = H2_PROTOCOL.search(out)
    finished, requests, status = H2_FINISHED.search(out), H2_REQUESTS.search(out), \
        H2_STATUS.search(out)
    if protocol is None or protocol.group(1) != want:
        raise RuntimeError(f"h2load negotiated {protocol.group(1) if protocol else 'nothing'}, "
                           f"not {want}: {_tail(out)}")
    if done.returncode != 0 or not (finished and requests and status):
        raise RuntimeError(f"h2load failed ({done.returncode}): {_tail(out)}")
    seconds = float(finished.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1}[finished.group(2)]
    _total, _started, _done, succeeded, failed, errored, timeout = (
        int(x) for x in requests.groups())
    # h2load counts status codes of responses that end after the duration too; only a
    # non-2xx share of them is an error here
    _ok, s3, s4, s5 = (int(x) for x in status.groups())
    durations = sorted(int(fields[2]) for fields in
                       (line.split("\t") for line in log.read_text().splitlines())
                       if len(fields) >= 3 and fields[1] != "-1")
    log.unlink()
    errors = {k: v for k, v in (("failed", failed), ("errored", errored),
                                ("timeout", timeout), ("3xx", s3), ("4xx", s4),
                                ("5xx", s5)) if v}
    return Measurement(
        value=succeeded / seconds,
        p50_ms=_percentile(durations, 0.50) / 1000 if durations else None,
        p99_ms=_percentile(durations, 0.99) / 1000 if durations else None,
        requests=succeeded,
        errors=errors,
        load_cpu=cpu["load_cpu"],
        server_cpu=cpu["server_cpu"],
        other_cpu=cpu["other_cpu"],
        rss_mib=server.rss_bytes() / MIB,
        generator="h2load",
    )


def _percentile(ordered: list[int], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _wsload(ctx: Context, server: ServerProcess, *args: str) -> subprocess.Popen:
    argv = [main_python(), str(WSLOAD), *args, "--port", str(server.port)]
    return subprocess.Popen(_pin(ctx, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wsload_line(proc: subprocess.Popen, prefix: str, what: str) -> dict:
    """The JSON after ``prefix`` on wsload's next line; its error output if it ends first."""
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"wsload {what} failed ({proc.wait()}): {line}{_tail(err)}")
    return json.loads(line[len(prefix):])


def run_wsload_echo(ctx: Context, server: ServerProcess, connections: int = 50,
                    seconds: float | None = None) -> Measurement:
    """Echo round trips for the duration, every echo checked; CPU over wsload's interval."""
    proc = _wsload(ctx, server, "echo", "--connections", str(connections),
                   "--duration", str(seconds or ctx.seconds))
    result, cpu = _wsload_run(proc, server, "opening its connections", "echo")
    if result["mismatch"]:
        raise RuntimeError(f"{server.spec.label} answered a WebSocket message wrongly: "
                           f"{result['mismatch']}")
    if not result["round_trips"]:
        raise RuntimeError(f"{server.spec.label}: no echo came back ({result['errors']})")
    return _wsload_measurement(server, result, cpu, result["round_trips"])


def _wsload_run(proc: subprocess.Popen, server: ServerProcess, opening: str, what: str
                ) -> tuple[dict, dict]:
    """wsload's RESULT, and the CPU shares over its measured interval (from its START)."""
    _wsload_line(proc, "START ", opening)
    meter = Meter(server)
    result = _wsload_line(proc, "RESULT ", what)
    cpu = meter.stop(load_cpu_seconds=result["cpu_seconds"])
    proc.communicate(timeout=60)
    return result, cpu


def _wsload_measurement(server: ServerProcess, result: dict, cpu: dict, count: int,
                        **extra: float) -> Measurement:
    return Measurement(
        value=result["rate"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        requests=count,
        errors=result["errors"],
        load_cpu=cpu["load_cpu"],
        server_cpu=cpu["server_cpu"],
        other_cpu=cpu["other_cpu"],
        rss_mib=server.rss_bytes() / MIB,
        generator="wsload",
        extra=extra,
    )


def expect(server: ServerProcess, method: str, path: str, body: bytes | None,
           want: Callable[[bytes], bool], what: str) -> None:
    """Fail loudly, before any load, if the server does not answer this workload right."""
    status, got = request(server.port, method, path, body, tls=server.launch.tls)
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


def http2(ctx: Context, server: ServerProcess) -> Measurement:
    """h2-tls and h2c: the same load, the launch says which."""
    try:
        status, body = h2_get(server.port, "/", tls=server.launch.tls)
    except H2CheckError as exc:
        raise RuntimeError(f"{server.spec.label}: no HTTP/2 here: {exc}") from exc
    if status != 200 or body != bench_app.HELLO:
        raise RuntimeError(f"{server.spec.label}: GET / over HTTP/2 answered {status} with "
                           f"{len(body)} bytes; expected 200 with the hello body")
    return run_h2load(ctx, server)


def ws_echo(ctx: Context, server: ServerProcess) -> Measurement:
    return run_wsload_echo(ctx, server)


def ws_idle_memory(ctx: Context, server: ServerProcess) -> Measurement:
    """RSS growth of a fresh server holding 2,000 idle WebSockets, per connection.

    The baseline is read after a short echo run, so the WebSocket code is loaded and the
    figure is what each further connection costs; the 2,000 are counted open when each has
    echoed one message (no sleeping: wsload says READY then).
    """
    run_wsload_echo(ctx, server, connections=2, seconds=0.2)
    baseline = server.rss_bytes()
    proc = _wsload(ctx, server, "idle", "--connections", str(IDLE_WEBSOCKETS))
    try:
        ready = _wsload_line(proc, "READY ", f"opening {IDLE_WEBSOCKETS} connections")
        held = server.rss_bytes()
        proc.stdin.write("close\n")
        proc.stdin.flush()
        done = _wsload_line(proc, "DONE ", "holding its connections")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    if done["lost_while_idle"]:
        raise RuntimeError(f"{server.spec.label} closed {done['lost_while_idle']} idle "
                           "WebSocket(s) before the memory was read")
    delta = held - baseline
    return Measurement(
        value=delta / ready["connections"] / 1024,
        requests=ready["connections"],
        rss_mib=held / MIB,
        generator="wsload",
        extra={"baseline_mib": baseline / MIB, "delta_mib": delta / MIB},
    )


def ws_broadcast(ctx: Context, server: ServerProcess) -> Measurement:
    """Channels group fan-out: deliveries per second to 1,000 listeners, and the delay from
    the publisher's send to each listener's receipt (the launch says which layer)."""
    expect(server, "GET", "/", None, lambda b: b == b"ready", "ready")
    proc = _wsload(ctx, server, "broadcast", "--connections", str(BROADCAST_LISTENERS),
                   "--path", "/ws/broadcast/", "--publish-path", "/ws/publish/",
                   "--duration", str(ctx.seconds), "--timeout", "60")
    result, cpu = _wsload_run(
        proc, server, f"joining {BROADCAST_LISTENERS:,} listeners to the group", "broadcast")
    if not result["deliveries"]:
        raise RuntimeError(f"{server.spec.label}: no broadcast reached every listener "
                           f"({result['errors']})")
    return _wsload_measurement(server, result, cpu, result["deliveries"],
                               broadcasts=result["broadcasts"] / result["seconds"])


BROADCAST_NOTE = (
    f"The same Channels application on every server (bench/broadcast.py): "
    f"{BROADCAST_LISTENERS:,} WebSockets, each an AsyncWebsocketConsumer in one group; a "
    f"publisher's WebSocket consumer calls group_send for each message it gets, and every "
    f"listener's consumer sends it on. wsload publishes numbered messages, 2 at a time, the "
    f"next as soon as every listener has the last; every listener must get every message in "
    f"order. msg/s counts deliveries (one message to one listener); p50 and p99 are the delays "
    f"from the publisher's send to each listener's receipt."
)


def django_json(ctx: Context, server: ServerProcess) -> Measurement:
    expect(server, "GET", "/json/", None, lambda b: json.loads(b) == DJANGO_JSON,
           f"the JSON {DJANGO_JSON}")
    return run_wrk(ctx, server, "/json/", connections=50)


def workers_keepalive(ctx: Context, server: ServerProcess) -> Measurement:
    """Keep-alive req/s of two workers (``server``) and of one (started here), unpinned.

    Both runs share the machine's CPUs with wrk (two threads): there is no spare CPU for
    wrk on two cores, so the ratio, not the req/s, is the figure to read.
    """
    expect(server, "GET", "/", None, lambda b: b == bench_app.HELLO, "the hello body")
    two = run_wrk(ctx, server, "/", connections=50, threads=2, pinned=False, per_process=True)
    with start_server(ctx, server.spec, replace(server.launch, workers=1)) as single:
        one = run_wrk(ctx, single, "/", connections=50, threads=2, pinned=False)
    two.extra.update(one_worker=one.value, ratio=two.value / one.value,
                     one_worker_p99_ms=one.p99_ms or 0.0)
    for kind, count in one.errors.items():
        two.errors[f"{kind} (1 worker)"] = count
    return two


WORKERS_NOTE = (
    "Measured unpinned: the server (supervisor and workers) and wrk (`-t 2 -c 50`) share "
    "every CPU of the machine, so on two cores wrk takes part of the CPU the second worker "
    "would use. Each round starts the 2-worker server, measures it, then starts a 1-worker "
    "server and measures that; the ratio column is the median of the rounds' ratios. The "
    "CPU columns are those of the 2-worker run. The busiest process's share of the server's "
    "CPU time in the 2-worker run says how evenly the workers shared the connections: 0.50 is "
    "even, 1.00 means one worker served every connection (the other idle)."
)

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
        Workload("h2-tls", "HTTP/2 over TLS, ALPN h2 (h2load -c 10 -m 100)", "req/s", H2_TLS,
                 http2, launch=TLS_LAUNCH, tool="h2load"),
        Workload("h2c", "HTTP/2 cleartext, h2c by prior knowledge (h2load -c 10 -m 100)",
                 "req/s", H2C, http2, tool="h2load"),
        Workload("ws-echo", "WebSocket echo round trips, 50 clients, one message in flight "
                 "each (wsload)", "msg/s", WEBSOCKET, ws_echo),
        Workload("ws-idle-memory", f"Server memory per idle WebSocket (RSS growth with "
                 f"{IDLE_WEBSOCKETS:,} open)", "KiB/conn", WEBSOCKET,
                 ws_idle_memory, higher_is_better=False, launch=MEMORY_LAUNCH,
                 extra_columns=(("baseline_mib", "idle RSS MiB", 1),
                                ("delta_mib", f"+ MiB for {IDLE_WEBSOCKETS:,}", 1)),
                 note=f"The server is started fresh for this row, echoes a few messages (so "
                 f"its WebSocket code is loaded), and its RSS (every process of it) is read: "
                 f"that is the idle RSS. Then {IDLE_WEBSOCKETS:,} WebSockets are opened and "
                 f"each echoes one message, which proves the server accepted it, and the RSS "
                 f"is read again while they sit idle: the growth divided by "
                 f"{IDLE_WEBSOCKETS:,} is the figure (lower is better, the ratios are "
                 f"inverted so that above 1× is better)."),
        Workload("ws-broadcast", f"Channels group broadcast to {BROADCAST_LISTENERS:,} "
                 "WebSockets, in-memory channel layer (wsload)", "msg/s", WEBSOCKET,
                 ws_broadcast, launch=BROADCAST_LAUNCH,
                 extra_columns=(("broadcasts", "broadcasts/s", 1),), note=BROADCAST_NOTE),
        Workload("ws-broadcast-redis", f"Channels group broadcast to {BROADCAST_LISTENERS:,} "
                 "WebSockets, channels_redis on a local Redis (wsload)", "msg/s", WEBSOCKET,
                 ws_broadcast, launch=BROADCAST_REDIS_LAUNCH, tool="redis-server",
                 extra_columns=(("broadcasts", "broadcasts/s", 1),), note=BROADCAST_NOTE),
        Workload("django-json", "Django JSON view through Django's ASGI handler (example "
                 "project /json/, DEBUG off, wrk -c 50)", "req/s", DJANGO, django_json,
                 launch=DJANGO_LAUNCH),
        Workload("workers-keepalive", "HTTP/1.1 keep-alive with 2 workers vs 1, unpinned "
                 "(wrk -t 2 -c 50)", "req/s", WORKERS, workers_keepalive,
                 launch=WORKERS_LAUNCH,
                 extra_columns=(("one_worker", "1 worker req/s", 0),
                                ("ratio", "2 w / 1 w", 2),
                                ("busiest_share", "busiest process's CPU share", 2)),
                 note=WORKERS_NOTE),
    )
}


def raise_fd_limit(needed: int = 4 * IDLE_WEBSOCKETS + 1024) -> None:
    """Let this process and the servers it starts hold the idle WebSockets' descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


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

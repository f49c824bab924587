"""The benchmark script runs end to end on a tiny workload and writes its Markdown table,
and its WebSocket load generator counts only correct echoes and complete, ordered
broadcasts.

No timing is asserted: the figures only have to exist.  Needs Debian's ``wrk``,
``redis-server`` and ``valgrind``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"
BEGIN = "<!-- bench:begin"
END = "<!-- bench:end -->"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN), *args], cwd=ROOT, capture_output=True, text=True,
        timeout=90,
    )


def test_tiny_run_writes_a_markdown_table(tmp_path):
    # A RESULTS.md from an earlier run, with hand-written text after the generated block.
    (tmp_path / "RESULTS.md").write_text(
        f"# Kept title\n\n{BEGIN}: old -->\nOLD TABLE\n{END}\n\n## Where the time goes\nkept\n"
    )
    done = run_bench(
        "--servers", "django-daphne", "--workloads", "keepalive",
        "--duration", "1", "--rounds", "1", "--warmup", "0", "--no-chart",
        "--output", str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr

    text = (tmp_path / "RESULTS.md").read_text()
    # The summary table: a header naming the server, and a measured keep-alive cell.
    assert "| workload | django-daphne |" in text
    assert re.search(r"^\| keepalive \(req/s\) \| [\d,]+<br>n/a D · n/a U \|$", text, re.M), text
    # The per-workload table has django-daphne's row: req/s, its range, p50 and p99 latency.
    row = re.search(r"^\| django-daphne \| ([\d,]+) \| n/a \| n/a \| [\d,]+–[\d,]+ \| "
                    r"([\d.]+) \| ([\d.]+) \|", text, re.M)
    assert row, text
    assert int(row.group(1).replace(",", "")) > 0
    # The earlier generated block is replaced; the hand-written text around it is kept.
    assert "OLD TABLE" not in text
    assert text.startswith("# Kept title\n")
    assert text.rstrip().endswith("## Where the time goes\nkept")

    data = json.loads((tmp_path / "results.json").read_text())
    measured = data["results"]["keepalive"]["django-daphne"]
    assert measured["requests"] > 0
    assert measured["errors"] == {}
    assert data["meta"]["cpus"] >= 1


def test_tiny_broadcast_run_over_redis(tmp_path):
    """ws-broadcast-redis end to end: the run's own redis-server, the Channels application,
    1,000 listeners in the group, every delivery checked."""
    done = run_bench(
        "--servers", "django-daphne", "--workloads", "ws-broadcast-redis",
        "--duration", "1", "--rounds", "1", "--warmup", "0", "--no-chart",
        "--output", str(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redis-server for the Redis channel layer at redis://127.0.0.1:" in done.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    measured = data["results"]["ws-broadcast-redis"]["django-daphne"]
    assert measured["errors"] == {}
    assert measured["requests"] >= 1000  # deliveries: at least one broadcast reached all
    text = (tmp_path / "RESULTS.md").read_text()
    assert "### ws-broadcast-redis: Channels group broadcast to 1,000 WebSockets" in text


def test_unknown_server_is_a_one_line_error_naming_the_flag():
    done = run_bench("--servers", "django-daphne,nginx", "--check")
    assert done.returncode == 2
    assert ("--servers: unknown nginx; choose from django-daphne, django-daphne-metrics, "
            "daphne,") in done.stderr


WSLOAD = ROOT / "bench" / "wsload.py"


def wsload(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WSLOAD), *args, "--port", str(port)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_wsload_counts_checked_echo_round_trips(start_server):
    server = start_server(app="bench.app:app")
    proc = wsload(server.port, "echo", "--connections", "3", "--duration", "0.3")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    start, result = out.splitlines()
    assert json.loads(start.removeprefix("START ")) == {"connections": 3}
    figures = json.loads(result.removeprefix("RESULT "))
    assert figures["round_trips"] > 0
    assert figures["mismatch"] is None and figures["errors"] == {}
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_wsload_reports_a_wrong_echo_instead_of_counting_it(start_server):
    server = start_server(app="tests.bench.test_bench_smoke:shouting_echo")
    proc = wsload(server.port, "echo", "--connections", "2", "--duration", "0.3")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    figures = json.loads(out.splitlines()[-1].removeprefix("RESULT "))
    assert figures["round_trips"] == 0
    assert figures["errors"] == {"mismatch": 2}
    assert "wrong echo: sent b'm000000'" in figures["mismatch"] or (
        "wrong echo: sent b'm000001'" in figures["mismatch"])
    assert "M000000" in figures["mismatch"] or "M000001" in figures["mismatch"]


def test_wsload_holds_idle_connections_until_told(start_server):
    server = start_server(app="bench.app:app")
    proc = wsload(server.port, "idle", "--connections", "20")
    ready = proc.stdout.readline()
    assert json.loads(ready.removeprefix("READY ")) == {"connections": 20, "errors": {}}
    proc.stdin.write("close\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.removeprefix("DONE ")) == {"lost_while_idle": 0}


def test_wsload_broadcast_counts_ordered_deliveries(start_server):
    server = start_server(app="bench.broadcast:application")
    proc = wsload(server.port, "broadcast", "--connections", "20", "--path", "/ws/broadcast/",
                  "--duration", "0.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    start, result = out.splitlines()
    assert json.loads(start.removeprefix("START ")) == {"connections": 20}
    figures = json.loads(result.removeprefix("RESULT "))
    assert figures["errors"] == {}
    assert figures["broadcasts"] > 0
    assert figures["deliveries"] >= 20 * figures["broadcasts"]
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_wsload_broadcast_reports_a_skipped_message(start_server):
    server = start_server(app="tests.bench.test_bench_smoke:skipping_broadcast")
    proc = wsload(server.port, "broadcast", "--connections", "3", "--path", "/ws/broadcast/",
                  "--duration", "0.3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    figures = json.loads(out.splitlines()[-1].removeprefix("RESULT "))
    assert figures["errors"]["gap or repeat"] == 3  # each listener, once


async def skipping_broadcast(scope, receive, send):
    """A broken broadcast: every listener gets message 0, then message 2 in place of 1
    (and nothing after)."""
    if scope["type"] != "websocket":
        return
    message = await receive()
    await send({"type": "websocket.accept"})
    if scope["path"] == "/ws/broadcast/":
        await send({"type": "websocket.send", "text": "joined"})
        await broadcast_ready.wait()
        for number in ("0", "2"):
            await send({"type": "websocket.send", "text": number})
    while message["type"] != "websocket.disconnect":
        message = await receive()
        if message["type"] == "websocket.receive":
            broadcast_ready.set()  # the publisher's first message


broadcast_ready = asyncio.Event()


async def shouting_echo(scope, receive, send):
    """A broken echo server: sends every text message back upper-cased."""
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            return


def test_instruction_counts_of_metrics_off_and_on():
    """bench/instructions.py (callgrind: Debian's valgrind) runs both variants through a
    tiny fixed load and prints the table of instructions per request."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "instructions.py"), "--workloads", "keepalive",
         "--variants", "off,on", "--scale", "0.02", "--no-fold"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "160 served" in done.stdout, done.stdout
    row = re.search(r"^\| keepalive \| ([\d,]+) \| ([\d,]+) \(([+-][\d.]+)%\) \|$",
                    done.stdout, re.MULTILINE)
    assert row, done.stdout
    off, on = (int(row.group(n).replace(",", "")) for n in (1, 2))
    # a Python server's request is tens of thousands of instructions, and metrics add some
    assert 20_000 < off < 2_000_000 and 20_000 < on < 2_000_000, done.stdout
    assert abs(on / off - 1 - float(row.group(3)) / 100) < 0.001

"""Prometheus metrics (--metrics-endpoint; docs/howto/metrics-and-health.rst): a known mix of
traffic, then scrapes read with prometheus_client's own parser account for every request,
refusal, WebSocket, exception and worker, with --workers (the supervisor's listener, one
view of every worker, over TCP) and in a single process (its reactor's, over a UNIX socket);
and a real Prometheus scraping it with the docs' configuration.  Real processes, real
sockets; no timing is asserted.  The workers fold their counts once a second, so each
check scrapes until the totals are in (Listener.wait_until)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import read_response, read_to_close
from tests.h2client import get as h2_get
from tests.metrics_client import Listener, family_names, total, value

APP = "tests.metrics_apps:app"
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "howto" / "metrics-and-health.rst"

prometheus_client = pytest.importorskip("prometheus_client")  # the metrics extra


def http1_requests(server, paths: list[str]) -> list[int]:
    """GETs over keep-alive connections (a few, so both workers get some): the statuses."""
    statuses = []
    connections = [server.connect(timeout=10) for _ in range(4)]
    buffers = [bytearray() for _ in connections]
    try:
        for index, path in enumerate(paths):
            sock, buffer = connections[index % 4], buffers[index % 4]
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            statuses.append(read_response(sock, buffer)[0])
    finally:
        for sock in connections:
            sock.close()
    return statuses


def websockets(server) -> None:
    """Five WebSockets: three closed by the client with 1000, two by the application with
    4001; and one the application denies (403)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    for _ in range(3):
        with server.ws_connect("/ws") as ws:
            ws.send("ping")
            assert ws.recv() == "ping"
            ws.close(1000)
    for _ in range(2):
        with server.ws_connect("/ws") as ws:
            ws.send("close 4001")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd.code == 4001
    with pytest.raises(InvalidStatus) as denied:
        server.ws_connect("/ws/deny")
    assert denied.value.response.status_code == 403


def refusals(server) -> None:
    """A malformed request (400) and an oversized header block (431)."""
    answer = server.raw_request(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    answer = server.raw_request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2048
                                + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_workers_one_view_of_every_request(start_server):
    server = start_server("--workers", "2", "--metrics-endpoint", "127.0.0.1:0",
                          "--max-header-size", "1024", app=APP)
    listener = Listener(server)
    listener.wait_until(
        lambda s: value(s, "daphne_worker_starts_total", reason="startup") == 2
        and value(s, "daphne_workers", state="ready") == 2,
        "both workers started and ready")

    statuses = http1_requests(server, ["/"] * 190 + ["/missing"] * 10)
    assert statuses.count(200) == 190 and statuses.count(404) == 10
    h2 = [h2_get(server.port, "/").status for _ in range(15)]
    h2 += [h2_get(server.port, "/missing").status for _ in range(5)]
    assert h2 == [200] * 15 + [404] * 5
    websockets(server)
    refusals(server)
    assert server.http.get("/raise").status_code == 500

    samples = listener.wait_until(
        lambda s: total(s, "daphne_requests_total") == 190 + 10 + 20 + 6 + 1
        and total(s, "daphne_refusals_total") == 2
        and total(s, "daphne_websockets_closed_total") == 5,
        "every request, refusal and WebSocket is counted")

    def requests(protocol: str, status: str) -> float:
        return value(samples, "daphne_requests_total", protocol=protocol, method="GET",
                     status=status)

    assert requests("http/1.1", "2xx") == 190
    assert requests("http/1.1", "4xx") == 10
    assert requests("http/1.1", "5xx") == 1  # /raise
    assert requests("http/2", "2xx") == 15
    assert requests("http/2", "4xx") == 5
    assert requests("websocket", "1xx") == 5
    assert requests("websocket", "4xx") == 1
    assert value(samples, "daphne_request_duration_seconds_count", protocol="http/1.1") == 201
    assert value(samples, "daphne_request_duration_seconds_count", protocol="http/2") == 20
    assert value(samples, "daphne_request_duration_seconds_bucket", protocol="http/2",
                 le="+Inf") == 20
    assert value(samples, "daphne_websockets_opened_total", protocol="http/1.1") == 5
    assert value(samples, "daphne_websockets_closed_total", code="1000") == 3
    assert value(samples, "daphne_websockets_closed_total", code="4001") == 2
    assert value(samples, "daphne_refusals_total", reason="400") == 1
    assert value(samples, "daphne_refusals_total", reason="431") == 1
    assert value(samples, "daphne_application_errors_total", type="http") == 1
    # 4 keep-alive + 20 HTTP/2 + 6 WebSocket + 2 refused + 1 httpx connections
    assert value(samples, "daphne_connections_total") == 33
    assert value(samples, "daphne_received_bytes_total") > 190 * len(b"GET / HTTP/1.1\r\n")
    assert value(samples, "daphne_sent_bytes_total") > 190 * len(b"HTTP/1.1 200 OK\r\n")
    assert value(samples, "daphne_event_loop_lag_seconds_count") > 0

    # a reload: the old workers' counts stay in the totals (their files outlive them)
    server.signal(signal.SIGHUP)
    samples = listener.wait_until(
        lambda s: value(s, "daphne_reloads_total", result="done") == 1
        and value(s, "daphne_worker_retired_total", reason="reload") == 2
        and value(s, "daphne_workers", state="ready") == 2
        and value(s, "daphne_workers", state="draining") == 0,
        "the reload is done and the old workers are gone")
    assert value(samples, "daphne_worker_starts_total", reason="reload") == 2
    assert value(samples, "daphne_worker_starts_total", reason="startup") == 2
    assert requests("http/1.1", "2xx") == 190
    assert total(samples, "daphne_requests_total") == 227
    assert total(samples, "daphne_worker_deaths_total") == 0

    # a worker killed outright is a death, and its replacement a start
    workers = [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()]
    assert len(workers) == 2
    os.kill(workers[0], 9)
    samples = listener.wait_until(
        lambda s: value(s, "daphne_worker_deaths_total", reason="exited") == 1
        and value(s, "daphne_worker_starts_total", reason="replacement") == 1
        and value(s, "daphne_workers", state="ready") == 2,
        "the killed worker is counted and replaced")
    assert total(samples, "daphne_requests_total") == 227


def test_single_process_over_a_unix_socket(start_server, tmp_path):
    path = tmp_path / "metrics.sock"
    server = start_server("--metrics-endpoint", f"unix:{path}", app=APP)
    listener = Listener(server)
    assert listener.unix_path == str(path)
    assert listener.get("/livez")[0] == 200 and listener.get("/readyz")[0] == 200
    assert http1_requests(server, ["/"] * 7 + ["/missing"] * 3) == [200] * 7 + [404] * 3
    assert h2_get(server.port, "/").status == 200
    websockets(server)
    samples = listener.wait_until(
        lambda s: total(s, "daphne_requests_total") == 7 + 3 + 1 + 6,
        "every request is counted")
    assert value(samples, "daphne_requests_total", protocol="http/1.1", method="GET",
                 status="2xx") == 7
    assert value(samples, "daphne_requests_total", protocol="http/1.1", method="GET",
                 status="4xx") == 3
    assert value(samples, "daphne_requests_total", protocol="http/2", method="GET",
                 status="2xx") == 1
    assert value(samples, "daphne_websockets_closed_total", code="4001") == 2
    # a single process also forwards prometheus_client's global registry (its process
    # collector, and the application's own metrics)
    assert "process_cpu_seconds" in family_names(samples)
    # the open connections, as a gauge
    sock = server.connect(timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(sock, bytearray())
    listener.wait_until(lambda s: value(s, "daphne_connections_open",
                                        protocol="http/1.1") == 1, "one connection is open")
    sock.close()
    listener.wait_until(lambda s: value(s, "daphne_connections_open",
                                        protocol="http/1.1") == 0, "none is open")
    server.stop()
    assert not path.exists()


@pytest.mark.parametrize("binding", ["tcp", "tls", "unix"])
@pytest.mark.parametrize("protocol", ["http/1.1", "websocket"])
def test_bytes_in_and_out_are_counted_exactly(start_server, binding, protocol):
    """Every byte read from a connection and written to it (after TLS), in pieces: a
    plain TCP or UNIX transport counts its reads itself (twisted_internals.read_into),
    any other through a wrapper; HTTP/1.1, and a WebSocket after its upgrade."""
    server = start_server("--metrics-endpoint", "127.0.0.1:0", app=APP, binding=binding)
    listener = Listener(server)
    if protocol == "http/1.1":  # (the body once the server asks for it: a read apart)
        pieces = [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n", b"he", b"llo"]
    else:
        key = b"dGhlIHNhbXBsZSBub25jZQ=="
        pieces = [b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"]
        mask = b"\x01\x02\x03\x04"
        for text in (b"one", b"close 1000"):
            masked = bytes(c ^ mask[i % 4] for i, c in enumerate(text))
            pieces.append(b"\x81" + bytes([0x80 | len(text)]) + mask + masked)
    with server.connect(timeout=10) as sock:
        received = b""
        for piece in pieces:
            sock.sendall(piece)
            if piece is pieces[0]:
                while b"\r\n\r\n" not in received:  # the 100 or the 101 first
                    received += sock.recv(4096)
        received += read_to_close(sock, 10)[0]
    assert received.startswith(b"HTTP/1.1 " + (b"100" if protocol == "http/1.1"
                                                 else b"101")), received
    sent = sum(map(len, pieces))
    samples = listener.wait_until(
        lambda s: value(s, "daphne_received_bytes_total") == sent
        and value(s, "daphne_sent_bytes_total") == len(received),
        f"{sent} bytes in and {len(received)} out are counted")
    assert value(samples, "daphne_connections_total") == 1


def test_openmetrics_when_the_scraper_asks(start_server):
    server = start_server("--metrics-endpoint", "127.0.0.1:0", app=APP)
    listener = Listener(server)
    status, content_type, body = listener.get(
        "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, content_type, _ = listener.get("/metrics")
    assert content_type.startswith("text/plain")
    assert listener.get("/nowhere")[0] == 404


def test_a_blocked_loop_is_logged_once_and_counted(start_server):
    server = start_server("--metrics-endpoint", "127.0.0.1:0",
                          "--loop-block-threshold", "0.2", app=APP)
    listener = Listener(server)
    assert server.http.get("/block?0.6").text == "blocked"
    match = server.wait_for(r"The event loop was blocked for ([\d.]+)s "
                            r"\(--loop-block-threshold 0.2s\)")
    assert float(match.group(1)) >= 0.2
    samples = listener.wait_until(lambda s: value(s, "daphne_event_loop_blocked_total") >= 1,
                                  "the incident is counted")
    assert value(samples, "daphne_event_loop_lag_seconds_bucket", le="+Inf") > \
        value(samples, "daphne_event_loop_lag_seconds_bucket", le="0.1")


def test_the_metrics_port_taken_stops_the_server(start_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ((), ("--workers", "2")):
            server = start_server(*workers, "--metrics-endpoint", f"127.0.0.1:{port}",
                                  app=APP, ready=False)
            assert server.wait_exit() == 1
            assert f"Cannot serve metrics on 127.0.0.1:{port}" in server.output


def test_the_counts_fold_to_what_observe_gives():
    """Counts.http's one table (buckets per protocol, method and status) folds, through
    http_totals and metrics._add_to_histogram, to what prometheus_client's own inc() and
    observe() give for the same requests (which also pins its Histogram children: a value
    object per bucket, not cumulative, and one for the sum)."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from django_daphne.core.counts import DURATION_BUCKETS, Counts
    from django_daphne.server.metrics import _add_to_histogram

    requests = [("1.1", "GET", 200, 0.0004), ("1.1", "GET", 200, 0.001),
                ("1.1", "POST", 404, 0.003), ("2", "GET", 200, 0.2), ("1.1", "GET", 200, 0.2),
                ("2", "PUT", 500, 7.0), ("1.1", "GET", 0, 100.0), ("2", "GET", 200, 0.0)]
    observed, added = CollectorRegistry(), CollectorRegistry()
    pairs = [(Counter("r", "r", ["v", "m", "s"], registry=registry),
              Histogram("h", "h", ["v"], buckets=DURATION_BUCKETS, registry=registry))
             for registry in (observed, added)]
    counts = Counts()
    for version, method, status, duration in requests:
        pairs[0][0].labels(version, method, str(status)).inc()
        pairs[0][1].labels(version).observe(duration)
        counts.http({"http_version": version, "method": method}, status, duration)
    totals, durations = counts.http_totals()
    for (version, method, status), count in totals.items():
        pairs[1][0].labels(version, method, str(status)).inc(count)
    for version, buckets in durations.items():
        _add_to_histogram(pairs[1][1].labels(version), buckets[:-1], buckets[-1])

    def samples(registry):
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                      for m in registry.collect() for s in m.samples
                      if not s.name.endswith("_created"))

    assert samples(observed) == samples(added)
    assert len(samples(added)) > 20
    taken = counts.take()
    assert taken.http_requests and not counts.http_requests  # (the next fold starts at 0)


# -- a real Prometheus, with the configuration the docs show


def docs_scrape_config() -> str:
    """The scrape configuration in docs/howto/metrics-and-health.rst (its yaml block)."""
    text = DOC.read_text()
    match = re.search(r"\.\. code-block:: yaml\n\n((?:   .*\n|\n)+)", text)
    assert match, "the docs show no yaml block"
    return "\n".join(line[3:] for line in match.group(1).splitlines()).strip() + "\n"


def test_the_docs_scrape_config_reads_as_prometheus_expects(tmp_path):
    config = docs_scrape_config()
    # parsed simply (no yaml in the suite's environment): the fields the docs explain
    assert re.search(r"^scrape_configs:$", config, re.M)
    assert re.search(r"^  - job_name: django-daphne$", config, re.M)
    assert re.search(r"^    metrics_path: /metrics$", config, re.M)
    assert re.search(r"targets: \[\"127\.0\.0\.1:9191\"\]", config)
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package: the real parser
        path = tmp_path / "prometheus.yml"
        path.write_text(config)
        result = subprocess.run([promtool, "check", "config", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Debian's prometheus package is not installed (./runtests "
                           "installs it)")
def test_a_real_prometheus_scrapes_the_workers(start_server, tmp_path):
    server = start_server("--workers", "2", "--metrics-endpoint", "127.0.0.1:0", app=APP)
    listener = Listener(server)
    host, port = listener.address
    assert http1_requests(server, ["/"] * 12) == [200] * 12
    listener.wait_until(lambda s: total(s, "daphne_requests_total") == 12, "12 requests")
    config = docs_scrape_config().replace("127.0.0.1:9191", f"{host}:{port}")
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
    (tmp_path / "prometheus.yml").write_text(config)
    web = free_port()
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        query = (f"http://127.0.0.1:{web}/api/v1/query?query=sum(daphne_requests_total"
                 "%7Bstatus%3D%222xx%22%7D)")
        deadline = time.monotonic() + 60
        result = None
        while time.monotonic() < deadline and prometheus.poll() is None:
            try:
                with urllib.request.urlopen(query, timeout=5) as answer:
                    result = json.load(answer)["data"]["result"]
            except OSError:
                result = None  # not listening yet
            if result:
                break
            time.sleep(0.25)  # between two polls of Prometheus's answer
        assert result, "Prometheus never stored a scrape"
        assert float(result[0]["value"][1]) == 12
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/targets",
                                    timeout=5) as answer:
            targets = json.load(answer)["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"]
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()


def test_recycles_are_counted_by_reason(start_server):
    """A worker replaced by its successor at --max-requests: one recycle with that reason,
    a successor's start, and the old worker's retirement."""
    server = start_server("--workers", "1", "--max-requests", "5",
                          "--metrics-endpoint", "127.0.0.1:0", app=APP)
    listener = Listener(server)
    listener.wait_until(lambda s: value(s, "daphne_workers", state="ready") == 1,
                        "the worker is ready")
    assert http1_requests(server, ["/"] * 8) == [200] * 8
    samples = listener.wait_until(
        lambda s: value(s, "daphne_worker_recycles_total", reason="max-requests") == 1
        and value(s, "daphne_workers", state="ready") == 1,
        "the recycle is done")
    assert value(samples, "daphne_worker_starts_total", reason="recycle") == 1
    assert value(samples, "daphne_worker_retired_total", reason="recycle") == 1
    assert total(samples, "daphne_worker_recycles_total") == 1

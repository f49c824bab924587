"""Reloads under load: what clients lose while a server with workers reloads again and again.

    python bench/reloads.py                      # django-daphne, Gunicorn+UvicornWorker and
                                                 # Granian, over TCP and TLS, 15 SIGHUPs in 30 s
    python bench/reloads.py --servers django-daphne --transports tls --reloads 5 --seconds 10

Each server runs ``bench.app:app`` with two workers. While its master gets SIGHUP every
``seconds / reloads`` seconds, three kinds of client run side by side:

- keep-alive clients, each sending ``GET /`` over one persistent connection;
- new-connection clients, one connection (and, over TLS, one handshake) per request;
- WebSockets, each echoing a message every 0.2 s and reconnecting whenever it is closed.

A request counts as **failed** when it got no complete 200: a reset, an EOF after it was
sent, a refused connection, a timeout, another status. One case is counted apart, as
**retried**: a keep-alive connection that the server closed while it was idle, found closed
when the next request was sent on it (no byte of an answer came). HTTP says a client may
retry that request on a new connection (RFC 9112 9.3.1), browsers and most clients do, and
this client does once; the retry itself counts as any other request. WebSocket closes are
counted by close code (1001 is the expected "going away" of a draining worker).

Not a test: the servers are compared in one run on one machine, and nothing is asserted.
The peers come from ``python bench/run.py --setup`` (bench/.venv-peers).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import (  # run as a script from the repository root
    APP,
    SERVERS,
    Launch,
    ServerProcess,
    ServerSpec,
    Start,
    peers_bin,
)
from tests.certs import make_certificate  # the tests' throwaway CA

WS_INTERVAL = 0.2
TIMEOUT = 10.0


def _gunicorn(s: Start) -> list[str]:
    argv = [peers_bin("gunicorn"), "-k", "uvicorn_worker.UvicornWorker",
            "-w", str(s.workers), "-b", f"127.0.0.1:{s.port}", "--log-level", "warning",
            "--graceful-timeout", "30"]
    if s.launch.tls:
        argv += ["--keyfile", str(s.key), "--certfile", str(s.cert)]
    return [*argv, s.app]


RELOADERS: dict[str, ServerSpec] = {
    "django-daphne": SERVERS["django-daphne"],
    "gunicorn": ServerSpec(name="gunicorn", label="Gunicorn+UvicornWorker", argv=_gunicorn,
                           python=lambda: peers_bin("python"), distribution="gunicorn"),
    "granian": SERVERS["granian"],
}


class Tally:
    """What the clients saw, shared by their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.failures: collections.Counter[str] = collections.Counter()
        self.closes: collections.Counter[int] = collections.Counter()

    def add(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def fail(self, kind: str, why: str) -> None:
        with self.lock:
            self.counts[f"{kind} failed"] += 1
            self.failures[f"{kind}: {why}"] += 1

    def closed(self, code: int) -> None:
        with self.lock:
            self.closes[code] += 1


def _connection(port: int, tls: bool) -> http.client.HTTPConnection:
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                           context=context)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)


def _get(conn: http.client.HTTPConnection, close: bool) -> tuple[bool, int]:
    """One GET /: (whether any answer began, its status); raises on a transport error."""
    conn.request("GET", "/", headers={"Connection": "close"} if close else {})
    try:
        response = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
            ssl.SSLEOFError):
        return False, 0
    response.read()
    return True, response.status


def _describe(exc: BaseException) -> str:
    return type(exc).__name__


def keepalive_client(port: int, tls: bool, stop: threading.Event, tally: Tally) -> None:
    conn: http.client.HTTPConnection | None = None
    reused = False
    while not stop.is_set():
        if conn is None:
            conn, reused = _connection(port, tls), False
        try:
            began, status = _get(conn, close=False)
        except (OSError, http.client.HTTPException) as exc:
            began, status, error = False, 0, _describe(exc)
        else:
            error = "closed before any answer"
        if began and status == 200:
            tally.add("keep-alive ok")
            reused = True
            continue
        conn.close()
        conn = None
        if began:
            tally.fail("keep-alive", f"status {status}")
        elif reused:
            tally.add("keep-alive retried")  # idle connection closed under us: once more
            try:
                retry = _connection(port, tls)
                began, status = _get(retry, close=False)
                if began and status == 200:
                    tally.add("keep-alive ok")
                    conn, reused = retry, True
                    continue
                retry.close()
                tally.fail("keep-alive", f"retry: status {status or 'none'}")
            except (OSError, http.client.HTTPException) as exc:
                tally.fail("keep-alive", f"retry: {_describe(exc)}")
        else:
            tally.fail("keep-alive", error)
    if conn is not None:
        conn.close()


def fresh_client(port: int, tls: bool, stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        conn = _connection(port, tls)
        try:
            began, status = _get(conn, close=True)
            if began and status == 200:
                tally.add("new-connection ok")
            else:
                tally.fail("new-connection",
                           f"status {status}" if began else "closed before any answer")
        except (OSError, http.client.HTTPException) as exc:
            tally.fail("new-connection", _describe(exc))
        finally:
            conn.close()


def websocket_client(port: int, tls: bool, stop: threading.Event, tally: Tally) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.sync.client import connect

    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ws"
    while not stop.is_set():
        try:
            with connect(url, ssl=context, open_timeout=TIMEOUT) as ws:
                tally.add("websocket opened")
                while not stop.wait(WS_INTERVAL):
                    ws.send("ping")
                    if ws.recv(timeout=TIMEOUT) != "ping":
                        tally.fail("websocket", "wrong echo")
                    tally.add("websocket echoes")
        except ConnectionClosed as exc:
            tally.closed(exc.rcvd.code if exc.rcvd else 1006)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            tally.fail("websocket", f"connect: {_describe(exc)}")
            stop.wait(0.1)


def measure(spec: ServerSpec, tls: bool, args: argparse.Namespace, certificate, log_dir: Path
            ) -> dict:
    launch = Launch(kind="reloads", app=APP, tls=tls, workers=args.workers, pinned=False)
    server = ServerProcess(spec, launch, None, log_dir / f"{spec.name}-{tls}.log",
                           certificate=certificate)
    tally = Tally()
    stop = threading.Event()
    try:
        server.wait_ready()
        threads = [
            *(threading.Thread(target=keepalive_client, args=(server.port, tls, stop, tally))
              for _ in range(args.keepalive)),
            *(threading.Thread(target=fresh_client, args=(server.port, tls, stop, tally))
              for _ in range(args.fresh)),
            *(threading.Thread(target=websocket_client, args=(server.port, tls, stop, tally))
              for _ in range(args.websockets)),
        ]
        for thread in threads:
            thread.start()
        interval = args.seconds / args.reloads
        started = time.monotonic()
        for n in range(args.reloads):
            time.sleep(max(0.0, started + n * interval - time.monotonic()))
            os.kill(server.proc.pid, signal.SIGHUP)
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
        time.sleep(args.settle)  # the last reload's drain, still under load
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT * 3)
        alive = server.proc.poll() is None
    finally:
        stop.set()
        server.stop()
    with tally.lock:
        return {"server": spec.label, "transport": "TLS" if tls else "TCP",
                "counts": dict(tally.counts), "failures": dict(tally.failures),
                "closes": dict(tally.closes), "alive": alive}


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"{args.reloads} SIGHUPs in {args.seconds:g} s, {args.workers} workers, "
        f"{args.keepalive} keep-alive + {args.fresh} new-connection clients, "
        f"{args.websockets} WebSockets",
        "",
        "| server | transport | HTTP requests answered | failed or reset | retried "
        "(idle keep-alive closed) | WebSocket closes by code | failures |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        counts = row["counts"]
        answered = counts.get("keep-alive ok", 0) + counts.get("new-connection ok", 0)
        failed = counts.get("keep-alive failed", 0) + counts.get("new-connection failed", 0)
        closes = ", ".join(f"{code}: {n}" for code, n in sorted(row["closes"].items()))
        failures = "; ".join(f"{why} ×{n}" for why, n in sorted(row["failures"].items()))
        lines.append(
            f"| {row['server']} | {row['transport']} | {answered:,} | {failed} | "
            f"{counts.get('keep-alive retried', 0)} | {closes or 'none'} | "
            f"{failures or 'none'}{'' if row['alive'] else ' (server exited)'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(RELOADERS),
                        help=f"comma-separated, of: {', '.join(RELOADERS)}")
    parser.add_argument("--transports", default="tcp,tls", help="tcp, tls or both")
    parser.add_argument("--reloads", type=int, default=15, help="SIGHUPs sent (default 15)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="over how long they are spread (default 30)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="load kept on after the last SIGHUP (default 3 s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keepalive", type=int, default=4, help="keep-alive clients")
    parser.add_argument("--fresh", type=int, default=2, help="new-connection clients")
    parser.add_argument("--websockets", type=int, default=10)
    args = parser.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    for name in names:
        if name not in RELOADERS:
            parser.error(f"--servers: unknown {name!r}; valid: {', '.join(RELOADERS)}")
    transports = [t for t in args.transports.split(",") if t]
    if not set(transports) <= {"tcp", "tls"}:
        parser.error("--transports: tcp, tls or both")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dd-reloads-") as tmp:
        certificate = make_certificate(Path(tmp))
        for name in names:
            spec = RELOADERS[name]
            if not spec.installed():
                print(f"{spec.label}: not installed (python bench/run.py --setup)",
                      file=sys.stderr)
                continue
            for transport in transports:
                print(f"{spec.label} over {transport.upper()} ...", file=sys.stderr, flush=True)
                rows.append(measure(spec, transport == "tls", args, certificate, Path(tmp)))
    print(report(rows, args))
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(TIMEOUT)
    sys.exit(main())

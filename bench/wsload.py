#!/usr/bin/env python3
"""A WebSocket load generator for the benchmark: echo round trips, and idle connections.

No C WebSocket load generator is packaged in Debian, and the Python clients (websockets,
autobahn) spend more time per message than the servers do, so this one is written for
speed: one asyncio (uvloop where installed) ``Protocol`` per connection, the masked client
frame built once per connection, and the echo compared as raw bytes with the one frame the
server must send back.  Every echo is checked (payload, opcode, a payload distinct per
connection), so a server that answers wrongly scores nothing but an error.

``echo``: N connections each send one small text message and wait for its echo, in a loop,
for D seconds; prints ``START`` once every handshake is done, then ``RESULT`` with a JSON
line: the round trips, the seconds, the latency percentiles, its own CPU seconds.

``idle``: opens N connections, echoes one message on each (the proof that the server
accepted and serves it), prints ``READY`` with a JSON line, then holds them open until its
standard input closes or says anything, closes them and prints ``DONE``.

``broadcast``: opens N listeners on ``--path`` (each must say ``joined`` first: it is in the
group) and one publisher on ``--publish-path``; prints ``START``; then the publisher sends
numbered messages, ``--in-flight`` at a time, each followed by the next once every
listener has received it, for D seconds; prints ``RESULT``: the deliveries up to the moment
the last whole message reached every listener, their rate over that time (so a message half
delivered when the time is up neither counts in part nor is lost), and the delay from the
publisher's send to each listener's receipt.  Every listener must get
every message, in order: a gap or a repeat is an error.

    python bench/wsload.py echo --port 8000 --connections 50 --duration 5
    python bench/wsload.py idle --port 8000 --connections 2000
    python bench/wsload.py broadcast --port 8000 --connections 1000 --path /ws/broadcast/

It needs only the standard library (uvloop if present) and takes no part of the ``bench``
package, so the benchmark runs it as its own process, pinned to the load generator's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import struct
import sys
import time
from array import array

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK = b"\x37\xfa\x21\x3d"  # a fixed key: servers unmask, none checks its randomness


def client_frame(payload: bytes) -> bytes:
    """One masked text frame (payloads under 126 bytes: the benchmark's are tiny)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + masked


def server_frame(payload: bytes) -> bytes:
    """The unmasked text frame a correct server sends back for ``payload``."""
    return bytes((0x81, len(payload))) + payload


class Stats:
    """What all connections share: counters, the run flag, the latency samples (ns)."""

    def __init__(self) -> None:
        self.running = False
        self.round_trips = 0
        self.latencies = array("q")
        self.errors: dict[str, int] = {}
        self.mismatch: str | None = None

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Client(asyncio.Protocol):
    """One WebSocket connection: handshake, then one message in flight at a time."""

    def __init__(self, host: str, path: str, number: int, stats: Stats,
                 opened: asyncio.Future, echoed: asyncio.Future | None) -> None:
        self.stats = stats
        self.opened = opened  # resolved once the handshake is accepted
        self.echoed = echoed  # idle mode: resolved by the first echo
        payload = b"m%06d" % number
        self.frame = client_frame(payload)
        self.expected = server_frame(payload)
        self.key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        self.request = (
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
            + self.key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.failed = False  # counted once, as what went wrong, not again as a disconnect
        self.buffer = b""
        self.sent_at = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def send(self) -> None:
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        if self.handshaken and not self.buffer and data == self.expected:
            self._echo()  # the common case: exactly one whole echo frame
            return
        self.buffer += data
        if not self.handshaken:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(b":") for line in lines[1:])}
            if not lines[0].startswith(b"HTTP/1.1 101") or (
                headers.get(b"sec-websocket-accept") != self.accept
            ):
                self._fail("handshake", f"handshake refused: {lines[0].decode(errors='replace')}")
                return
            self.handshaken = True
            self.buffer = rest
            if not self.opened.done():
                self.opened.set_result(None)
        while self.buffer and self.handshaken:
            if len(self.buffer) < 2:
                return
            length = self.buffer[1] & 0x7F
            start = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            if len(self.buffer) < start:
                return
            if length == 126:
                length = struct.unpack("!H", self.buffer[2:4])[0]
            elif length == 127:
                length = struct.unpack("!Q", self.buffer[2:10])[0]
            if len(self.buffer) < start + length:
                return
            frame, self.buffer = self.buffer[:start + length], self.buffer[start + length:]
            opcode = frame[0] & 0x0F
            if opcode == 0x9:  # ping: answer with a masked pong of the same payload
                payload = frame[start:]
                masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + MASK + masked)
            elif opcode == 0xA:
                continue
            elif self.expected is None and opcode == 0x1:
                self.text_received(frame[start:])
            elif frame == self.expected:
                self._echo()
            elif opcode == 0x8:
                self._fail("closed", "server sent a close frame")
                return
            else:
                self._fail("mismatch", f"wrong echo: sent {self.expected[2:]!r}, "
                           f"got frame {frame[:40]!r}")
                return

    def text_received(self, payload: bytes) -> None:
        """A text message, where no echo is expected (see Listener)."""

    def _echo(self) -> None:
        stats = self.stats
        if self.echoed is not None:
            if not self.echoed.done():
                self.echoed.set_result(None)
            return
        if not stats.running:
            return
        now = time.perf_counter_ns()
        stats.latencies.append(now - self.sent_at)
        stats.round_trips += 1
        self.sent_at = now
        self.transport.write(self.frame)

    def _fail(self, kind: str, message: str) -> None:
        self.failed = True
        self.stats.error(kind)
        if kind == "mismatch" and self.stats.mismatch is None:
            self.stats.mismatch = message
        for future in (self.opened, self.echoed):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(message))
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stats.running and self.handshaken and not self.failed:
            self.stats.error("disconnected")
        for future in (self.opened, self.echoed):
            if future is not None and not future.done():
                future.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)


class Board:
    """The broadcast's bookkeeping: what was published when, and who has it."""

    def __init__(self, stats: Stats, listeners: int, in_flight: int) -> None:
        self.stats = stats
        self.listeners = listeners
        self.in_flight = in_flight
        self.publisher: Client | None = None
        self.sent_at: dict[int, int] = {}  # message number -> perf_counter_ns at send
        self.received: dict[int, int] = {}  # message number -> listeners that have it
        self.next = 0
        self.completed = 0  # messages every listener has
        # the measured deliveries of complete messages, and when the last one completed: the
        # rate counts whole broadcasts only (one still arriving when the time is up would
        # otherwise count in part, or not at all)
        self.complete_deliveries = 0
        self.last_complete_at = 0.0
        self.measured = 0  # messages completed while measuring
        self.first_done = asyncio.get_running_loop().create_future()

    def publish(self) -> None:
        number = self.next
        self.next += 1
        self.received[number] = 0
        self.sent_at[number] = time.perf_counter_ns()
        self.publisher.transport.write(client_frame(b"%d" % number))

    def delivered(self, number: int) -> None:
        stats = self.stats
        sent = self.sent_at.get(number)
        if sent is None:
            stats.error("unknown message")
            return
        if stats.running:
            stats.latencies.append(time.perf_counter_ns() - sent)
            stats.round_trips += 1
        count = self.received[number] + 1
        if count < self.listeners:
            self.received[number] = count
            return
        del self.received[number], self.sent_at[number]
        self.completed += 1
        if stats.running:
            self.measured += 1
            self.complete_deliveries = stats.round_trips
            self.last_complete_at = time.monotonic()
        if not self.first_done.done():
            self.first_done.set_result(None)
        if stats.running:
            self.publish()


class Listener(Client):
    """A member of the group: each broadcast must be the one after the last it got."""

    def __init__(self, host: str, path: str, number: int, stats: Stats,
                 opened: asyncio.Future, board: Board) -> None:
        super().__init__(host, path, number, stats, opened, None)
        self.board = board
        self.joined = opened.get_loop().create_future()
        self.expected = None  # no echo: text_received
        self.last = -1

    def text_received(self, payload: bytes) -> None:
        if payload == b"joined":
            if not self.joined.done():
                self.joined.set_result(None)
            return
        number = int(payload)
        if number != self.last + 1:
            self.stats.error("gap or repeat")
        self.last = number
        self.board.delivered(number)


async def broadcast(args: argparse.Namespace) -> dict:
    stats = Stats()
    board = Board(stats, args.connections, args.in_flight)
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(args.concurrency)
    listeners: list[Listener] = []

    async def join(number: int) -> None:
        async with gate:
            opened = loop.create_future()
            _, listener = await loop.create_connection(
                lambda: Listener(args.host, args.path, number, stats, opened, board),
                args.host, args.port)
            listeners.append(listener)
            await asyncio.wait_for(opened, args.timeout)
            await asyncio.wait_for(listener.joined, args.timeout)

    results = await asyncio.gather(*(join(n) for n in range(args.connections)),
                                   return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"wsload: {len(failed)} of {args.connections} listener(s) did not "
                         f"join; first: {failed[0]!r}")
    opened = loop.create_future()
    _, board.publisher = await loop.create_connection(
        lambda: Client(args.host, args.publish_path, -1, stats, opened, None),
        args.host, args.port)
    await asyncio.wait_for(opened, args.timeout)
    # the first message through, untimed: every consumer and the layer are warm
    stats.running = False
    board.publish()
    await asyncio.wait_for(board.first_done, args.timeout)
    print("START " + json.dumps({"connections": len(listeners)}), flush=True)
    started_cpu = time.process_time()
    started = time.monotonic()
    stats.running = True
    for _ in range(args.in_flight):
        board.publish()
    await asyncio.sleep(args.duration)  # the measuring interval itself
    stats.running = False
    elapsed = board.last_complete_at - started if board.last_complete_at else 0.0
    cpu = time.process_time() - started_cpu
    for client in [*listeners, board.publisher]:
        client.transport.close()
    latencies = sorted(stats.latencies)
    return {
        "deliveries": board.complete_deliveries,
        "broadcasts": board.measured,
        "seconds": elapsed,
        "rate": board.complete_deliveries / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.50) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "errors": stats.errors,
        "mismatch": stats.mismatch,
        "cpu_seconds": cpu,
    }


async def open_clients(args: argparse.Namespace, stats: Stats, idle: bool) -> list[Client]:
    """Connect and hand-shake every client, at most ``--concurrency`` at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(args.concurrency)
    clients: list[Client] = []

    async def one(number: int) -> None:
        async with gate:
            opened = loop.create_future()
            echoed = loop.create_future() if idle else None
            _, client = await loop.create_connection(
                lambda: Client(args.host, args.path, number, stats, opened, echoed),
                args.host, args.port,
            )
            clients.append(client)
            await asyncio.wait_for(opened, args.timeout)
            if echoed is not None:  # the echo proves the server accepted this connection
                client.send()
                await asyncio.wait_for(echoed, args.timeout)

    results = await asyncio.gather(*(one(n) for n in range(args.connections)),
                                   return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        for client in clients:
            client.transport.abort()
        raise SystemExit(f"wsload: {len(failed)} of {args.connections} connection(s) failed; "
                         f"first: {failed[0]!r}")
    return clients


def percentile(sorted_ns: list[int], fraction: float) -> float:
    index = min(len(sorted_ns) - 1, int(fraction * len(sorted_ns)))
    return sorted_ns[index] / 1e6


async def echo(args: argparse.Namespace) -> dict:
    stats = Stats()
    clients = await open_clients(args, stats, idle=False)
    print("START " + json.dumps({"connections": len(clients)}), flush=True)
    started_cpu = time.process_time()
    started = time.monotonic()
    stats.running = True
    for client in clients:
        client.send()
    await asyncio.sleep(args.duration)  # the measuring interval itself
    stats.running = False
    elapsed = time.monotonic() - started
    cpu = time.process_time() - started_cpu
    for client in clients:
        client.transport.close()
    latencies = sorted(stats.latencies)
    return {
        "round_trips": stats.round_trips,
        "seconds": elapsed,
        "rate": stats.round_trips / elapsed,
        "p50_ms": percentile(latencies, 0.50) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "errors": stats.errors,
        "mismatch": stats.mismatch,
        "cpu_seconds": cpu,
    }


async def idle(args: argparse.Namespace) -> None:
    stats = Stats()
    clients = await open_clients(args, stats, idle=True)
    print("READY " + json.dumps({"connections": len(clients), "errors": stats.errors}),
          flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    lost = sum(1 for c in clients if c.closed.done())
    for client in clients:
        client.transport.close()
    print("DONE " + json.dumps({"lost_while_idle": lost}), flush=True)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wsload", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("echo", "idle", "broadcast"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--publish-path", default="/ws/publish/",
                        help="broadcast: where the publisher connects.")
    parser.add_argument("--in-flight", type=int, default=2,
                        help="broadcast: messages on their way at once. Default: 2.")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="echo: seconds of round trips. Default: 5.")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="Handshakes in progress at once. Default: 50.")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="Seconds for one handshake or one echo while opening. Default: 10.")
    args = parser.parse_args(argv)
    raise_fd_limit(args.connections + 64)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    if args.mode == "echo":
        print("RESULT " + json.dumps(runner(echo(args))), flush=True)
    elif args.mode == "broadcast":
        print("RESULT " + json.dumps(runner(broadcast(args))), flush=True)
    else:
        runner(idle(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

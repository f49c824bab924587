"""Fixtures that run the real server in a subprocess and talk to it over real sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"Listening on (TCP|TLS) address \[?([0-9a-fA-F.:]+)\]?:(\d+)")


class ServerProcess:
    """A `python -m django_daphne ...` subprocess whose output is collected line by line."""

    def __init__(self, args, env=None, cwd=None, pass_fds=()):
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        self.args = [sys.executable, "-m", "django_daphne", *args]
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
            cwd=cwd or ROOT, pass_fds=pass_fds, text=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.addresses: list[tuple[str, str, int]] = []

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @property
    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match:
        """Block until a line matching ``pattern`` appears (or fail, showing the output)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r}; output so far:\n{self.output}"
                    )
                self.cond.wait(remaining)

    def wait_ready(self, count: int = 1) -> ServerProcess:
        self.wait_for(r"Server ready")
        for line in self.lines:
            match = LISTEN_RE.search(line)
            if match:
                self.addresses.append((match.group(1), match.group(2), int(match.group(3))))
        assert len(self.addresses) >= count, self.output
        return self

    @property
    def port(self) -> int:
        return self.addresses[0][2]

    @property
    def host(self) -> str:
        return self.addresses[0][1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def signal(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)


@pytest.fixture
def start_server():
    """start_server(*args, app="tests.apps:app", env=None, ready=True) -> ServerProcess."""
    started = []

    def start(*args, app="tests.apps:app", env=None, ready=True, cwd=None, pass_fds=(),
              count=1):
        argv = list(args)
        if not any(a in argv for a in ("-p", "--port", "-u", "--unix-socket", "--fd", "-e",
                                        "--endpoint", "-b", "--bind")):
            argv = ["-p", "0", *argv]
        server = ServerProcess([*argv, app] if app else argv, env=env, cwd=cwd,
                               pass_fds=pass_fds)
        started.append(server)
        if ready:
            server.wait_ready(count)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module", params=["httptools", "python"])
def server(request):
    """One shared server per test module and parser, for tests that do not change config."""
    proc = ServerProcess(["-p", "0", "--http-parser", request.param, "tests.apps:app"])
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 5.0,
                read_until_close: bool = True) -> bytes:
    """Send raw bytes and read until the server closes (or the timeout)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read_until_close:
            return sock.recv(65536)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict, bytes]:
    """Read one full HTTP/1.1 response (Content-Length or chunked) from ``sock``."""

    def fill():
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-response")
        buffer.extend(chunk)

    while b"\r\n\r\n" not in buffer:
        fill()
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    status = int(head[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buffer) < length:
            fill()
        body = bytes(buffer[:length])
        del buffer[:length]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buffer:
                fill()
            line_end = buffer.index(b"\r\n")
            size = int(bytes(buffer[:line_end]), 16)
            del buffer[: line_end + 2]
            while len(buffer) < size + 2:
                fill()
            body += bytes(buffer[:size])
            del buffer[: size + 2]
            if size == 0:
                break
    else:
        body = b""
    return status, headers, body

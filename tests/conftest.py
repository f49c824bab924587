"""Fixtures that run the real server in a subprocess and talk to it over real sockets.

Every black-box behaviour is meant to hold on every transport: ``binding_args(binding)``
gives the server's arguments for a plain TCP port ("tcp"), a TLS endpoint ("tls") or a UNIX
socket ("unix"), and a ServerProcess started with ``binding=`` connects to it the same way
whichever it is (``connect()``, ``http``, ``ws_connect()``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.certs import make_certificate

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"Listening on (TCP|TLS) address \[?([0-9a-fA-F.:]+)\]?:(\d+)")
UNIX_RE = re.compile(r"Listening on UNIX socket (\S+)")
BINDINGS = ("tcp", "tls", "unix")
# what the HTTP/1.1 and WebSocket black-box tests run on (``transport_server``): plain TCP
# under each HTTP/1.1 parser, then TLS and a UNIX socket under the default one
SERVER_VARIANTS = ("tcp-httptools", "tcp-python", "tls", "unix")

_certificate: tuple[Path, Path] | None = None


def certificate() -> tuple[Path, Path]:
    """The key and certificate (valid for localhost and 127.0.0.1) of every TLS binding in
    the test run, made once."""
    global _certificate
    if _certificate is None:
        directory = Path(tempfile.mkdtemp(prefix="dd-tls-"))
        atexit.register(shutil.rmtree, directory, True)
        _certificate = make_certificate(directory)
    return _certificate


def client_context(alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A TLS client context that trusts the test certificate and offers ``alpn``."""
    context = ssl.create_default_context(cafile=str(certificate()[1]))
    context.set_alpn_protocols(list(alpn))
    return context


def binding_args(binding: str) -> list[str]:
    """The server arguments that listen on one ``binding`` of BINDINGS."""
    if binding == "tcp":
        return ["-p", "0"]
    if binding == "tls":
        key, cert = certificate()
        return ["-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
    if binding == "unix":
        directory = tempfile.mkdtemp(prefix="dd-unix-")
        atexit.register(shutil.rmtree, directory, True)
        return ["-u", os.path.join(directory, "server.sock")]
    raise ValueError(f"unknown binding {binding!r}")


def variant_args(variant: str) -> tuple[str, list[str]]:
    """(binding, server arguments) of one of SERVER_VARIANTS ("tls", "tcp-python", ...)."""
    binding, _, parser = variant.partition("-")
    args = binding_args(binding)
    if parser:
        args += ["--http-parser", parser]
    return binding, args


class ServerProcess:
    """A `python -m django_daphne ...` subprocess whose output is collected line by line.

    ``binding`` ("tcp", "tls" or "unix") says how ``connect()``, ``http`` and
    ``ws_connect()`` reach its first listening address; the arguments must listen there
    (see ``binding_args``)."""

    def __init__(self, args, env=None, cwd=None, pass_fds=(), binding="tcp"):
        self.binding = binding
        self.unix_path: str | None = None
        self._http = None
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
            match = UNIX_RE.search(line)
            if match and self.unix_path is None:
                self.unix_path = match.group(1)
        if self.binding == "unix":
            assert self.unix_path is not None, self.output
        else:
            assert len(self.addresses) >= count, self.output
        return self

    # -- reaching the server the same way on every binding

    @property
    def scheme(self) -> str:
        return "https" if self.binding == "tls" else "http"

    def connect(self, timeout: float = 5.0, alpn: tuple[str, ...] = ("http/1.1",)
                ) -> socket.socket:
        """A socket connected to the first binding; on TLS, wrapped (offering ``alpn``)
        once the handshake is done."""
        if self.binding == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.unix_path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.binding == "tls":
            return client_context(alpn).wrap_socket(sock, server_hostname="localhost")
        return sock

    @property
    def http(self):
        """An httpx.Client for this server: relative URLs, any binding."""
        if self._http is None:
            import httpx

            if self.binding == "unix":
                self._http = httpx.Client(transport=httpx.HTTPTransport(uds=self.unix_path),
                                          base_url="http://localhost", timeout=10)
            elif self.binding == "tls":
                self._http = httpx.Client(verify=client_context(), timeout=10,
                                          base_url=f"https://localhost:{self.port}")
            else:
                self._http = httpx.Client(base_url=self.url, timeout=10)
        return self._http

    def ws_connect(self, path: str = "/ws/echo", **kwargs):
        """A websockets (sync) client connection to ``path``."""
        from websockets.sync.client import connect, unix_connect

        if self.binding == "unix":
            return unix_connect(self.unix_path, "ws://localhost" + path, **kwargs)
        if self.binding == "tls":
            return connect(f"wss://localhost:{self.port}{path}", ssl=client_context(),
                           **kwargs)
        return connect(f"ws://127.0.0.1:{self.port}{path}", **kwargs)

    def ws_uri(self, path: str = "/ws/echo") -> str:
        """The ws:// or wss:// URI of ``path`` that ``ws_connect`` and friends ask for."""
        if self.binding == "unix":
            return "ws://localhost" + path
        if self.binding == "tls":
            return f"wss://localhost:{self.port}{path}"
        return f"ws://127.0.0.1:{self.port}{path}"

    def ws_connect_async(self, path: str = "/ws/echo", **kwargs):
        """A websockets asyncio client connection to ``path`` (``async with`` it, or await
        it), any binding."""
        from websockets.asyncio.client import connect, unix_connect

        if self.binding == "unix":
            return unix_connect(self.unix_path, self.ws_uri(path), **kwargs)
        if self.binding == "tls":
            return connect(self.ws_uri(path), ssl=client_context(), **kwargs)
        return connect(self.ws_uri(path), **kwargs)

    def raw_request(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send raw bytes on a new connection; what came back once the server ended it
        (fails if it did not within ``timeout``)."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            received, ended = read_to_close(sock, timeout)
        assert ended, f"the server kept the connection open; it sent {received[:200]!r}"
        return received

    @property
    def ws_scheme(self) -> str:
        return "wss" if self.binding == "tls" else "ws"

    @property
    def logged_client(self) -> str:
        """A regex for how the server's log lines name a client of this binding: its
        ['host', port], or None on a UNIX socket (which has no client address)."""
        if self.binding == "unix":
            return r"None"
        return r"\['127\.0\.0\.1', \d+\]"

    def rss_kib(self) -> int:
        """The server process's resident memory now (from /proc), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for the server process")

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
        if self._http is not None:
            self._http.close()
            self._http = None
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
              count=1, binding=None):
        """``binding`` (one of BINDINGS): listen there (and connect there) first."""
        argv = list(args)
        if binding is not None:
            argv = [*binding_args(binding), *argv]
        elif not any(a in argv for a in ("-p", "--port", "-u", "--unix-socket", "--fd", "-e",
                                          "--endpoint", "-b", "--bind")):
            argv = ["-p", "0", *argv]
        server = ServerProcess([*argv, app] if app else argv, env=env, cwd=cwd,
                               pass_fds=pass_fds, binding=binding or "tcp")
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


def start_variant(variant: str, *options: str, app: str = "tests.apps:app"
                  ) -> ServerProcess:
    """A ready server on one of SERVER_VARIANTS, with ``options``."""
    binding, args = variant_args(variant)
    proc = ServerProcess([*args, *options, app], binding=binding)
    try:
        return proc.wait_ready()
    except BaseException:
        proc.stop()
        raise


@pytest.fixture(scope="module", params=SERVER_VARIANTS)
def transport_server(request):
    """One shared server per test module and SERVER_VARIANTS entry: TCP under each parser,
    TLS, a UNIX socket.  The HTTP/1.1 and WebSocket test modules take it as their
    ``server``."""
    proc = start_variant(request.param)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", params=BINDINGS)
def bound_server(request):
    """One shared server per test module and binding (TCP, TLS, UNIX socket)."""
    proc = start_variant(request.param)
    try:
        yield proc
    finally:
        proc.stop()


def read_to_close(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Read until the server ends the connection: (what arrived, whether it ended within
    ``timeout``).  A TLS close_notify, a FIN and a reset all end it."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return b"".join(chunks), True
    except TimeoutError:
        return b"".join(chunks), False


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


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of our own on a free port, with nothing written to disk."""
    with socket.socket() as probe:  # a port nothing listens on now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise AssertionError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


# -- manage.py in a project whose settings module a test writes


@pytest.fixture
def project(tmp_path):
    """Environment for a manage.py run whose settings module lives in tmp_path."""
    return {"PYTHONPATH": str(tmp_path), "EXAMPLE_DB": str(tmp_path / "db.sqlite3"),
            "EXAMPLE_STATIC_ROOT": str(tmp_path)}


@pytest.fixture
def manage(project):
    """manage(*args, env=None, pass_fds=()): ``manage.py ARGS`` with ``project``'s
    environment (and ``env``), stopped after the test."""
    started = []

    def start(*args, env=None, pass_fds=()):
        from tests.django_helpers import ManageProcess

        process = ManageProcess(list(args), env={**project, **(env or {})}, pass_fds=pass_fds)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()

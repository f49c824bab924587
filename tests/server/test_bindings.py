"""Every way of binding: TCP v4/v6, UNIX socket, inherited fd, endpoint strings, TLS,
plugins, several at once; and the one-line errors when a binding cannot be had."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import sys

import httpx
import pytest

from tests.certs import make_certificate
from tests.conftest import ROOT


def test_default_binding_logs_real_port(start_server):
    server = start_server("-p", "0")
    assert server.host == "127.0.0.1" and server.port > 0
    assert httpx.get(server.url + "/echo").json()["server"] == ["127.0.0.1", server.port]


def test_ipv6(start_server):
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6; the test needs ::1")
    server = start_server("-b", "::1", "-p", "0")
    assert server.host == "::1"
    scope = httpx.get(server.url + "/echo").json()
    assert scope["client"][0] == "::1"
    assert scope["server"] == ["::1", server.port]


def test_unix_socket(start_server, tmp_path):
    path = str(tmp_path / "daphne.sock")
    server = start_server("-u", path, count=0)
    server.wait_for(r"Listening on UNIX socket " + path)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        scope = client.get("http://localhost/echo").json()
    assert scope["server"] == [path, None]
    assert scope["client"] is None


def test_stale_unix_socket_is_replaced(start_server, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nothing listens: what a crashed server leaves behind
    server = start_server("-u", path, count=0)
    server.wait_for(r"Listening on UNIX socket")
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://localhost/pid").text == str(server.proc.pid)


def test_inherited_fd(start_server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = start_server("--fd", str(fd), pass_fds=(fd,))
    listener.close()  # the child holds its own copy
    assert server.port == port
    assert httpx.get(f"http://127.0.0.1:{port}/pid").text == str(server.proc.pid)


def test_inherited_ipv6_fd_gets_its_family(start_server):
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    server = start_server("--fd", str(fd), pass_fds=(fd,))
    listener.close()
    assert httpx.get(f"http://[::1]:{port}/pid").text == str(server.proc.pid)


def test_inherited_unix_socket_is_left_as_its_owner_made_it(start_server, tmp_path):
    """A UNIX socket handed over by systemd (--fd, or a systemd: endpoint) keeps the mode
    its owner gave it (SocketMode=0600 here; Twisted's adopted port made it 0666, and failed
    on a socket another user owns), and stays after the server stops (it was removed, so
    clients of the still-active socket unit found no file)."""
    path = str(tmp_path / "activated.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    fd = listener.fileno()
    try:
        server = start_server("--fd", str(fd), pass_fds=(fd,), count=0)
        server.wait_for("Listening on UNIX socket " + path)
        with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
            assert client.get("http://localhost/pid").text == str(server.proc.pid)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        # and the socket still listens: the next activation's connections queue on it
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    finally:
        listener.close()


def systemd_launcher(tmp_path, fd: int) -> str:
    """An executable that does what systemd does for a socket-activated service: the
    socket as fd 3, LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES for this process, then exec."""
    launcher = tmp_path / "systemd-launch"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"if {fd} != 3:\n    os.dup2({fd}, 3)\n    os.close({fd})\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', "
        "LISTEN_FDNAMES='web')\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )
    launcher.chmod(0o755)
    return str(launcher)


def test_systemd_endpoint(start_server, tmp_path, monkeypatch):
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    monkeypatch.setattr(sys, "executable", systemd_launcher(tmp_path, listener.fileno()))
    server = start_server("-e", "systemd:domain=INET6:index=0",
                          pass_fds=(listener.fileno(),))
    listener.close()
    assert server.port == port
    assert httpx.get(f"http://[::1]:{port}/pid").text == str(server.proc.pid)


def test_systemd_endpoint_without_socket_activation(start_server):
    code, output = run_failing(start_server, "-e", "systemd:domain=INET:index=0")
    assert code == 1
    assert_one_line_error(output, "Endpoint 'systemd:domain=INET:index=0': this process was "
                                  "given no socket by systemd socket activation")


def test_several_bindings_at_once(start_server, tmp_path):
    path = str(tmp_path / "multi.sock")
    server = start_server("-p", "0", "-u", path, "-e", "tcp:0:interface=127.0.0.1", count=2)
    ports = [port for kind, host, port in server.addresses]
    assert len(set(ports)) == 2
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/pid").text == str(server.proc.pid)
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        assert client.get("http://localhost/pid").text == str(server.proc.pid)


def test_tls_endpoint(start_server, tmp_path):
    key, cert = make_certificate(tmp_path)
    server = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    assert server.addresses[0][0] == "TLS"
    context = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=context) as client:
        scope = client.get(f"https://localhost:{server.port}/echo").json()
    assert scope["scheme"] == "https"
    # and plain HTTP on the TLS port does not get through
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"/echo" not in data


def test_endpoint_plugin(start_server):
    env = {"PYTHONPATH": str(ROOT / "tests" / "plugin_path")}
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = start_server("-e", f"testtcp:{port}", env=env)
    assert server.port == port
    assert httpx.get(f"http://127.0.0.1:{port}/pid").text == str(server.proc.pid)


# -- errors: one line, non-zero exit, no traceback unless -v 2


def run_failing(start_server, *args, app="tests.apps:app", env=None):
    server = start_server(*args, app=app, env=env, ready=False)
    code = server.wait_exit()
    return code, server.output


def assert_one_line_error(output: str, expected: str) -> None:
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert any(expected in line for line in errors), output
    assert "Traceback" not in output, output


def test_port_in_use(start_server, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    marker = tmp_path / "shutdown"
    try:
        code, output = run_failing(start_server, "-p", str(port),
                                   env={"TEST_LIFESPAN_SHUTDOWN_FILE": str(marker)})
    finally:
        busy.close()
    assert code == 1
    assert_one_line_error(output, f"Cannot listen on 127.0.0.1:{port}: address already in use")
    # the application's startup ran (it is run before binding): its shutdown runs too
    assert marker.read_text() == "shutdown"


def test_unparseable_endpoint(start_server):
    code, output = run_failing(start_server, "-e", "nosuchkind:1234",
                               env={"TEST_LIFESPAN_SLOW": "0"})
    assert code == 1
    assert_one_line_error(output, "Invalid endpoint 'nosuchkind:1234'")
    assert "lifespan: starting" not in output  # refused before the application starts


def test_missing_tls_files(start_server, tmp_path):
    code, output = run_failing(
        start_server, "-e", f"ssl:0:privateKey={tmp_path}/nokey.pem:certKey={tmp_path}/no.pem"
    )
    assert code == 1
    assert_one_line_error(output, f"TLS private key file '{tmp_path}/nokey.pem' does not exist")


def test_application_that_does_not_import(start_server):
    code, output = run_failing(start_server, "-p", "0", app="tests.nosuchmodule:app")
    assert code == 1
    assert_one_line_error(output, "Cannot import module 'tests.nosuchmodule'")


def test_application_import_error_names_the_cause(start_server, tmp_path):
    (tmp_path / "brokenapp.py").write_text("import json\nraise RuntimeError('settings bad')\n")
    server = start_server("-p", "0", app="brokenapp:app", ready=False, cwd=tmp_path)
    assert server.wait_exit() == 1
    assert_one_line_error(server.output,
                          "Cannot import module 'brokenapp': RuntimeError: settings bad")
    # with -v 2 the traceback is shown too
    server = start_server("-p", "0", "-v", "2", app="brokenapp:app", ready=False, cwd=tmp_path)
    assert server.wait_exit() == 1
    assert "Traceback" in server.output


def test_missing_attribute(start_server):
    code, output = run_failing(start_server, "-p", "0", app="tests.apps:nope")
    assert code == 1
    assert_one_line_error(output, "Module 'tests.apps' has no attribute 'nope'")


def test_bad_flag_value_names_the_flag(start_server):
    code, output = run_failing(start_server, "-p", "0", "--http-timeout", "soon")
    assert code == 2
    assert "--http-timeout: expected a number of seconds, got 'soon'" in output
    code, output = run_failing(start_server, "-p", "0", "--ping-interval", "-1")
    assert code == 2
    assert "--ping-interval: must be at least 0.001 (or 0 for no limit), got -1.0" in output



def test_a_bad_endpoint_is_refused_before_anything_is_bound(start_server):
    """Every endpoint is understood before the first is bound: no "Listening on" for the
    good ones, then a refusal (a client could have connected in between)."""
    code, output = run_failing(start_server, "-p", "0", "-u", "/tmp/never-bound.sock",
                               "-e", "tcp:abc")
    assert code == 1
    assert_one_line_error(output, "Invalid endpoint 'tcp:abc'")
    assert "Listening on" not in output
    assert not os.path.exists("/tmp/never-bound.sock")


def test_an_endpoint_without_interface_says_it_listens_everywhere(start_server, tmp_path):
    """-b defaults to 127.0.0.1, but Twisted's ssl: and tcp: endpoints listen on every
    interface without interface=: the startup line says so (and not for one that has it)."""
    key, cert = make_certificate(tmp_path)
    everywhere = start_server("-e", f"ssl:0:privateKey={key}:certKey={cert}")
    everywhere.wait_for(r"Listening on TLS address 0\.0\.0\.0:\d+ \(every interface: the "
                        r"endpoint has no interface=\)")
    local = start_server("-e", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    assert "every interface" not in local.output


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["single", "workers"])
def test_unix_socket_mode(start_server, tmp_path, workers):
    path = tmp_path / "d.sock"
    server = start_server("-u", str(path), "--unix-socket-mode", "660", *workers, ready=False)
    server.wait_for("Server ready \\(2 workers" if workers else "Server ready")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    server.stop()
    default = start_server("-u", str(tmp_path / "e.sock"), ready=False)
    default.wait_for("Server ready")
    assert stat.S_IMODE((tmp_path / "e.sock").stat().st_mode) == 0o666
    default.stop()


def test_a_bad_unix_socket_mode_names_the_option(start_server, tmp_path):
    server = start_server("-u", str(tmp_path / "d.sock"), "--unix-socket-mode", "rw-rw----",
                          ready=False)
    assert server.wait_exit() == 2
    assert "--unix-socket-mode: expected permissions in octal such as 660" in server.output

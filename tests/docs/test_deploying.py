"""docs/howto/deploying.rst, run: every configuration block marked ``deploy-test`` is read from
the document, changed only in its ports and paths, and run with the real nginx, Caddy and
systemd-socket-activate in front of the example project.  Through each proxy: a page, a
static file, a large upload, a WebSocket chat, and the client address and scheme the
application sees (``--proxy-headers``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from ..certs import make_certificate
from ..django_helpers import ROOT, ManageProcess, free_port, run_manage, settings_module

DOC = ROOT / "docs" / "howto" / "deploying.rst"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin: not on every user's PATH
CSS = (ROOT / "example_project/demo/static/demo/site.css").read_bytes()
UPLOAD = os.urandom(5 * 1024 * 1024)  # above nginx's 1 MB default limit


def doc_block(name: str) -> str:
    """The code block after ``.. deploy-test: name`` in docs/howto/deploying.rst."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f".. deploy-test: {name}")
    at = next(i for i in range(start, len(lines)) if lines[i].startswith(".. code-block::"))
    block = []
    for line in lines[at + 1:]:
        if line and not line.startswith("   "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip() + "\n"


def replace(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; the document must still contain ``old``."""
    assert old in text, f"{old!r} is no longer in the document's block"
    return text.replace(old, new)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example project ready for production: a migrated database, STATIC_ROOT
    collected, DEBUG off, a certificate for the proxy, and a settings module that trusts
    the proxy's origin for form POSTs (the proxy's port is chosen here)."""
    root = tmp_path_factory.mktemp("site")
    os.chmod(root, 0o755)
    env = {"EXAMPLE_DB": str(root / "db.sqlite3"), "EXAMPLE_STATIC_ROOT": str(root / "static"),
           "DJANGO_DEBUG": "0", "PYTHONPATH": str(root)}
    assert run_manage("migrate", "-v", "0", env=env).returncode == 0
    assert run_manage("collectstatic", "--noinput", "-v", "0", env=env).returncode == 0
    key, cert = make_certificate(root)
    port = free_port()
    module = settings_module(root, f"""
        CSRF_TRUSTED_ORIGINS = ["https://127.0.0.1:{port}"]
        # the project's own bindings and static files are not wanted behind the proxy
        DAPHNE = {{}}
        SILENCED_SYSTEM_CHECKS = ["django_daphne.W002"]  # the proxy serves static files
    """, name="deploy_settings")
    env["DJANGO_SETTINGS_MODULE"] = module
    return {"root": root, "env": env, "key": key, "cert": cert, "port": port,
            "settings": module}


class Process:
    """A command (a proxy, or the server under systemd-socket-activate) and its output."""

    def __init__(self, argv, env=None, cwd=None):
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Until a line of the output contains ``text`` (fails on a timeout or an exit)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                assert remaining > 0 and self.reader.is_alive(), "".join(self.lines)
                self.cond.wait(remaining)

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.reader.join(10)
        with self.cond:
            return "".join(self.lines)


def wait_until_listening(port: int, proc: subprocess.Popen, what: str) -> None:
    """Until a TCP connection to ``port`` succeeds (the proxy has bound it)."""
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} did not start: {proc.stdout.read().decode()}") from None
            time.sleep(0.05)


def start_nginx(site, upstream_block: str | None, socket_path: Path) -> Process:
    root = site["root"]
    conf_dir = root / f"nginx-{free_port()}"
    conf_dir.mkdir()
    text = doc_block("nginx-site")
    text = replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{site['port']} ssl http2;")
    text = replace(text, "/etc/letsencrypt/live/example.com/fullchain.pem", str(site["cert"]))
    text = replace(text, "/etc/letsencrypt/live/example.com/privkey.pem", str(site["key"]))
    text = replace(text, "alias /srv/myproject/staticfiles/;", f"alias {root}/static/;")
    text = replace(text, "unix:/run/myproject/daphne.sock", f"unix:{socket_path}")
    if upstream_block is not None:
        text = re.sub(r"upstream myproject \{.*?\}\n", upstream_block, text, count=1,
                      flags=re.S)
    # what /etc/nginx/nginx.conf would hold, for a private nginx run by the test
    (conf_dir / "nginx.conf").write_text(textwrap.dedent(f"""
        user root;
        daemon off;
        master_process off;
        pid {conf_dir}/nginx.pid;
        error_log stderr warn;
        events {{}}
        http {{
            include /etc/nginx/mime.types;
            access_log off;
            client_body_temp_path {conf_dir}/body;
            proxy_temp_path {conf_dir}/proxy;
            fastcgi_temp_path {conf_dir}/fastcgi;
            uwsgi_temp_path {conf_dir}/uwsgi;
            scgi_temp_path {conf_dir}/scgi;
        """) + textwrap.indent(text, "    ") + "}\n")
    process = Process([NGINX, "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir)])
    wait_until_listening(site["port"], process.proc, "nginx")
    return process


def start_caddy(site, socket_path: Path) -> Process:
    root = site["root"]
    conf_dir = root / f"caddy-{free_port()}"
    conf_dir.mkdir()
    text = doc_block("caddyfile")
    text = replace(text, "example.com {", f"127.0.0.1:{site['port']} {{\n"
                   f"    tls {site['cert']} {site['key']}")
    text = replace(text, "root * /srv/myproject/staticfiles", f"root * {root}/static")
    text = replace(text, "unix//run/myproject/daphne.sock", f"unix/{socket_path}")
    # global options for a private Caddy run by the test: no admin endpoint, no redirect
    # listener on port 80, its state in the test's directory
    (conf_dir / "Caddyfile").write_text(
        "{\n    admin off\n    auto_https disable_redirects\n"
        f"    storage file_system {conf_dir}/data\n}}\n\n" + text)
    env = {"HOME": str(conf_dir), "XDG_DATA_HOME": str(conf_dir / "data"),
           "XDG_CONFIG_HOME": str(conf_dir / "config")}
    process = Process(["caddy", "run", "--config", str(conf_dir / "Caddyfile"),
                       "--adapter", "caddyfile"], env=env)
    wait_until_listening(site["port"], process.proc, "caddy")
    return process


def systemd_units(site, socket_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """The socket unit's ListenStream, and the service unit's ExecStart, Environment and
    WorkingDirectory, with the paths of this test."""
    socket_unit = doc_block("systemd-socket")
    service = doc_block("systemd-service")
    assert "ListenStream=/run/myproject/daphne.sock" in socket_unit
    fields = dict(line.split("=", 1) for line in service.splitlines()
                  if "=" in line and not line.startswith("#"))
    # systemd waits for READY=1 and reloads through SIGHUP (tests/server/test_operations.py)
    assert fields["Type"] == "notify"
    assert fields["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = shlex.split(fields["ExecStart"])
    assert argv[0] == "/srv/myproject/.venv/bin/python"
    argv[0] = sys.executable
    name, value = fields["Environment"].split("=", 1)
    assert (name, value) == ("DJANGO_SETTINGS_MODULE", "myproject.settings")
    assert fields["WorkingDirectory"] == "/srv/myproject"
    return argv, {name: site["settings"]}, ROOT


def start_socket_activated(site, socket_path: Path, redis_url: str) -> Process:
    """The service as systemd starts it: systemd-socket-activate binds the socket unit's
    socket and starts ExecStart with it on the first connection."""
    argv, unit_env, cwd = systemd_units(site, socket_path)
    # two workers share the channel layer through Redis (check E011 refuses the
    # in-memory layer with --workers)
    env = {**site["env"], **unit_env, "REDIS_URL": redis_url,
           "PYTHONPATH": f"{site['root']}{os.pathsep}{ROOT}"}
    setenv = [f"--setenv={name}={value}" for name, value in env.items()]
    # (systemd names every socket it passes, by default after its unit: Twisted, and so
    # the systemd: endpoint, needs the name to be there)
    return Process(["systemd-socket-activate", "--listen", str(socket_path),
                    "--fdname=myproject.socket", *setenv, *argv], cwd=cwd)


def start_tcp_server(site, port: int) -> ManageProcess:
    server = ManageProcess(["daphne", "-b", "127.0.0.1", "-p", str(port), "--proxy-headers"],
                           env=site["env"])
    server.wait_for("Server ready")
    return server


def exercise(site, http2: bool) -> None:
    """Through the proxy: a page, a static file, an upload, a WebSocket chat, and what the
    application sees of the client."""
    base = f"https://127.0.0.1:{site['port']}"
    context = ssl.create_default_context(cafile=str(site["cert"]))
    # from 127.0.0.2: a client address that is not one of the trusted proxies (the default
    # trusts 127.0.0.1, the proxy's)
    transport = httpx.HTTPTransport(verify=context, http2=http2, local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=60) as client:
        # the first request may start the server (socket activation): it waits meanwhile
        page = client.get(base + "/")
        assert page.status_code == 200, page.text
        assert page.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        # the client's own X-Forwarded-For is not believed: the proxy's entry is
        seen = client.get(base + "/client/", headers={"X-Forwarded-For": "203.0.113.9",
                                                      "Daphne-Root-Path": "/forged"})
        assert seen.json()["client"] == "127.0.0.2"
        assert seen.json()["root_path"] == ""  # the proxy cleared the client's
        assert seen.json()["scheme"] == "https"
        assert seen.json()["host"] == f"127.0.0.1:{site['port']}"
        static = client.get(base + "/static/demo/site.css")
        assert static.status_code == 200 and static.content == CSS
        # a 5 MB form upload, with Django's CSRF check passing over https
        form = client.get(base + "/upload/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        uploaded = client.post(
            base + "/upload/", data={"csrfmiddlewaretoken": token},
            files={"file": ("big.bin", UPLOAD, "application/octet-stream")},
            headers={"Accept": "application/json", "Origin": base, "Referer": base + "/"})
        assert uploaded.status_code == 200, uploaded.text[:500]
        assert uploaded.json()["sha256"] == hashlib.sha256(UPLOAD).hexdigest()
    # a context of its own: httpx offered h2 by ALPN on the one above
    context = ssl.create_default_context(cafile=str(site["cert"]))
    with connect(f"wss://127.0.0.1:{site['port']}/ws/chat/deploy/", ssl=context,
                 origin=base, open_timeout=30) as chat:
        chat.send(json.dumps({"author": "ops", "text": "through the proxy"}))
        assert json.loads(chat.recv(timeout=10)) == {"author": "ops",
                                                     "text": "through the proxy"}


def test_nginx_on_a_unix_socket_under_systemd_socket_activation(site, tmp_path, redis_url):
    socket_path = tmp_path / "daphne.sock"
    server = start_socket_activated(site, socket_path, redis_url)
    proxy = None
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert server.proc.poll() is None and time.monotonic() < deadline, server.stop()
            time.sleep(0.05)
        proxy = start_nginx(site, None, socket_path)
        exercise(site, http2=False)
        exercise(site, http2=True)
        # the first request started the server; its second worker may still be starting
        server.wait_for("Server ready (2 workers")
    finally:
        proxy_output = proxy.stop() if proxy else ""
        output = server.stop()
    # the socket systemd passed, served by two workers, drained on SIGTERM
    assert "Listening on inherited fd 3" in output, output
    assert "Server ready (2 workers" in output, output
    assert "Received SIGTERM, stopping 2 workers gracefully" in output, output
    assert "[emerg]" not in proxy_output, proxy_output


def test_nginx_on_a_tcp_port(site, tmp_path):
    port = free_port()
    upstream = replace(doc_block("nginx-upstream-tcp"), "127.0.0.1:8000", f"127.0.0.1:{port}")
    server = start_tcp_server(site, port)
    proxy = start_nginx(site, upstream, tmp_path / "unused.sock")
    try:
        exercise(site, http2=False)
    finally:
        proxy.stop()
        server.stop()


def test_caddy_with_http2_to_the_client(site, tmp_path):
    socket_path = tmp_path / "daphne.sock"
    server = ManageProcess(["daphne", "-u", str(socket_path), "--proxy-headers"],
                           env=site["env"])
    server.wait_for("Server ready")
    proxy = start_caddy(site, socket_path)
    try:
        exercise(site, http2=True)
    finally:
        output = proxy.stop()
        server.stop()
    assert '"level":"error"' not in output, output


def test_dockerfile_command_as_process_1_drains_on_sigterm(site, tmp_path):
    """The Dockerfile's build step and command, run as a container runs them: the command
    as process 1 of its own PID namespace (``unshare``; Docker itself cannot run here).
    Process 1 gets only the signals it handles: ``docker stop``'s SIGTERM must reach the
    server (exec form, no shell in between) and drain what is in flight."""
    dockerfile = doc_block("dockerfile")
    lines = dict(line.split(" ", 1) for line in dockerfile.splitlines() if line.strip())
    assert lines["STOPSIGNAL"] == "SIGTERM"
    command = json.loads(lines["CMD"])  # exec form: a JSON list, no shell
    assert command[:3] == ["python", "manage.py", "daphne"] and "--static" in command
    assert "DJANGO_SETTINGS_MODULE=myproject.settings" in lines["ENV"].split()
    static_root = tmp_path / "static"
    env = {**os.environ, **site["env"], "EXAMPLE_STATIC_ROOT": str(static_root),
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": f"{site['root']}{os.pathsep}{ROOT}"}
    build = shlex.split(next(line.split(" ", 1)[1] for line in dockerfile.splitlines()
                             if "collectstatic" in line))
    subprocess.run([sys.executable, *build[1:]], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    port = free_port()
    argv = [sys.executable, *command[1:]]
    argv[argv.index("8000")] = str(port)
    container = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork",
                                  "--mount-proc", *argv],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
    try:
        output = []
        for raw in container.stdout:
            output.append(raw.decode())
            if "Server ready" in raw.decode():
                break
        else:
            raise AssertionError("".join(output))
        [server_pid] = Path(f"/proc/{container.pid}/task/{container.pid}/children"
                            ).read_text().split()
        status = Path(f"/proc/{server_pid}/status").read_text()
        assert re.search(r"^NSpid:\s+\d+\s+1$", status, re.M), status  # process 1 inside
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(base + "/static/demo/site.css").content == CSS  # --static
        with httpx.stream("GET", base + "/stream/?count=8&delay=0.1", timeout=30) as streamed:
            assert streamed.status_code == 200
            received = streamed.iter_lines()
            first = next(received)
            os.kill(int(server_pid), signal.SIGTERM)  # docker stop, mid-response
            rest = list(received)
        assert container.wait(30) == 0
    finally:
        if container.poll() is None:
            container.kill()
    lines_sent = [first, *rest]
    assert len([line for line in lines_sent if line.strip()]) == 8, lines_sent
    remaining = container.stdout.read().decode()
    assert "Received SIGTERM, shutting down gracefully" in remaining, remaining

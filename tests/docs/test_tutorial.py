"""docs/tutorial.rst, followed as a new user follows it: every command run and every file
written as the document shows them, in its order, in a directory of the test's own; then
what the tutorial says the user sees is checked, in development (runserver) and in
production (``manage.py daphne`` over TLS, two workers, a Redis channel layer).

How the document marks what the test runs (design your additions to the tutorial on it):

* A ``code-block`` with a ``:caption:`` is a file of the project, relative to the
  project's directory (``chat-tutorial``):

  - ``:caption: chat/consumers.py``: the block is the whole file, written as it is;
  - ``:caption: mysite/settings.py (add at the end)``: the block is appended to the file;
  - ``:caption: mysite/settings.py (replace NAME)``: the block replaces the file's top-level
    assignment of ``NAME`` (``INSTALLED_APPS``), which must keep every entry the generated
    file had, in its order.

* A ``code-block`` after a comment line ``.. tutorial-step: NAME`` holds shell commands. They
  run in one shell session that goes on from block to block, as in the user's terminal:
  the directory a ``cd`` enters and the variables an ``export`` sets carry over. Steps that
  start a server (``runserver``, ``serve``) hold one command, which the test starts and
  talks to; the steps after them (``curl``, ``reload``, ``stop``) act on that server.

* Every ``code-block`` is one or the other: the test fails on a block it would not run.
  Sample output is a plain literal block (``::``), which the test does not read.

What the test changes, and nothing else (``replace`` asserts each string is still in the
document, so a change to the document that the test does not follow fails it): the virtual
environment is the suite's own (``python3 -m venv .venv`` becomes a link to it, and the
``pip install`` an import check of what it installs), the ports (8000 and 8443) are free
ones, the example process id is the supervisor's, and ``REDIS_URL`` points at the test's
own redis-server (the production settings read it, as the tutorial says).
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed

from ..browser import start_chromium
from ..django_helpers import BANNER_RE, ROOT, ManageProcess, free_port

DOC = ROOT / "docs" / "tutorial.rst"
TEXT = DOC.read_text()
# the supervisor's process id in the tutorial's sample output
SAMPLE_PID = "4814"
# a worker's accepted connection is found among this many at most (each lands on one of
# two workers, as the kernel hashes its address: all on one is a chance of 2 ** -39)
MAX_PROBES = 40
# seconds a chat stays idle: more than channels_redis's wait for a message (5 s)
IDLE = 6


class Loop:
    """An event loop in a thread of its own, that the test's WebSocket clients run on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


_loop: Loop | None = None


class Client:
    """A WebSocket client used from the test's thread, as websockets' sync client is, but
    whose connection one thread drives (websockets' asyncio client, on ``Loop``). The sync
    client reads in a thread of its own while the caller's writes: over TLS 1.3 that
    concurrent use of one SSL object loses, about once in 200 connections, the handshake
    request it writes while the reader takes the server's session ticket (the request
    never reaches the server, which closes the connection after HEADER_TIMEOUT).
    A single-threaded blocking client and the asyncio client never lose it."""

    def __init__(self, url: str, **kwargs) -> None:
        global _loop
        if _loop is None:
            _loop = Loop()
        self.loop = _loop

        async def open_connection() -> AsyncConnection:
            return await async_connect(url, open_timeout=30, **kwargs)

        self.connection = self.loop.run(open_connection())

    @property
    def local_port(self) -> int:
        return self.connection.transport.get_extra_info("sockname")[1]

    def send(self, text: str) -> None:
        self.loop.run(self.connection.send(text))

    def recv(self, timeout: float) -> str:
        try:
            return self.loop.run(asyncio.wait_for(self.connection.recv(), timeout))
        except asyncio.TimeoutError:  # TimeoutError's alias from Python 3.11 on only
            raise TimeoutError(f"nothing received in {timeout} s") from None

    def close(self) -> None:
        self.loop.run(self.connection.close())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def connect(url: str, **kwargs) -> Client:
    return Client(url, **kwargs)


@dataclass
class Block:
    line: int  # where the code-block directive is, counting from 1
    language: str
    caption: str | None
    step: str | None
    text: str


def blocks() -> list[Block]:
    """Every ``code-block`` of the document, in order."""
    lines = TEXT.splitlines()
    found = []
    step = None
    for number, line in enumerate(lines):
        if line.startswith(".. tutorial-step: "):
            step = line.split(":", 1)[1].strip()
            continue
        if not line.startswith(".. code-block::"):
            continue
        language = line.split("::", 1)[1].strip()
        options, body, at = {}, [], number + 1
        while at < len(lines) and re.match(r"   :\w+:", lines[at]):
            name, _, value = lines[at].strip()[1:].partition(":")
            options[name] = value.strip()
            at += 1
        for text in lines[at:]:
            if text and not text.startswith("   "):
                break
            body.append(text)
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Block(number + 1, language, options.get("caption"), step, code))
        step = None
    return found


def file_block(path: str) -> str:
    [block] = [b for b in blocks() if b.caption == path]
    return block.text


def replace(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; the document must still contain ``old``."""
    assert old in text, f"{old!r} is no longer in the tutorial"
    return text.replace(old, new)


def in_doc(text: str) -> None:
    """What the test checks is what the tutorial says."""
    assert text in TEXT, f"{text!r} is no longer in the tutorial"


def apply_file(project: Path, caption: str, text: str) -> None:
    match = re.fullmatch(r"(\S+)(?: \((add at the end|replace (\w+))\))?", caption)
    assert match, f"a caption the test does not know: {caption!r}"
    path = project / match.group(1)
    if match.group(2) is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    elif match.group(3) is None:
        path.write_text(path.read_text().rstrip("\n") + "\n\n\n" + text)
    else:
        name = match.group(3)
        source = path.read_text()
        [old] = [node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                 and [getattr(t, "id", None) for t in node.targets] == [name]]
        [new] = ast.parse(text).body
        assert isinstance(new, ast.Assign), text
        before, after = ast.literal_eval(old.value), ast.literal_eval(new.value)
        kept = [entry for entry in after if entry in before]
        assert kept == before, f"the tutorial's {name} drops or reorders {before}: {after}"
        lines = source.splitlines(keepends=True)
        path.write_text("".join(lines[:old.lineno - 1]) + text
                        + "".join(lines[old.end_lineno:]))


class Shell:
    """The user's terminal: each block runs in bash, from the directory and with the
    environment the blocks before it left."""

    def __init__(self, cwd: Path, env: dict[str, str], state: Path) -> None:
        self.cwd, self.env, self.state = cwd, env, state

    def run(self, script: str) -> str:
        env_file, cwd_file = self.state / "env", self.state / "cwd"
        result = subprocess.run(
            ["bash", "-c", f"set -e\ncd {shlex.quote(str(self.cwd))}\n{script}\n"
             f"env -0 > {shlex.quote(str(env_file))}\npwd > {shlex.quote(str(cwd_file))}\n"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=120)
        assert result.returncode == 0, f"{script}\nexited {result.returncode}:\n{result.stdout}"
        self.env = dict(item.split("=", 1) for item in env_file.read_text().split("\0")
                        if "=" in item)
        self.cwd = Path(cwd_file.read_text().strip())
        return result.stdout

    def start(self, script: str) -> ManageProcess:
        """A server the block's one command starts, as the shell would run it."""
        [command] = script.strip().splitlines()
        return ManageProcess([], env=self.env, cwd=self.cwd, command=shlex.split(command))


def owner(client: Client, server_port: int, pids: set[int]) -> int:
    """The process of ``pids`` that holds the server's end of ``client``'s connection: the
    kernel's table of TCP sockets names the accepted socket's inode (local port the
    server's, remote port the client's), and a process's descriptors name their inodes."""
    client_port = client.local_port
    inodes = []
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if int(local.split(":")[1], 16) == server_port \
                and int(remote.split(":")[1], 16) == client_port and state == "01":
            inodes.append(inode)
    assert len(inodes) == 1, f"no single accepted socket for client port {client_port}"
    target = f"socket:[{inodes[0]}]"
    holders = []
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    holders.append(pid)
                    break
            except FileNotFoundError:  # closed meanwhile
                pass
    assert len(holders) == 1, f"{target} is held by {holders} of {pids}"
    return holders[0]


def exchange(ada: Client, bob: Client) -> None:
    """A message from each of two clients of one room reaches both (through the channel
    layer, and only so: each consumer sends its own client what the group gets)."""
    ada.send(json.dumps({"message": "hello from ada"}))
    assert json.loads(bob.recv(timeout=30)) == {"message": "hello from ada"}
    bob.send(json.dumps({"message": "hello from bob"}))
    received = [json.loads(ada.recv(timeout=30)) for _ in range(2)]
    assert received == [{"message": "hello from ada"}, {"message": "hello from bob"}]
    assert json.loads(bob.recv(timeout=30)) == {"message": "hello from bob"}


def on_two_workers(stack: ExitStack, url: str, origin: str, context: ssl.SSLContext,
                   port: int, workers: set[int]) -> list[tuple[Client, int]]:
    """Two clients of one room whose connections two different workers serve: clients are
    connected until one lands on another worker than the first (those on the same one are
    closed), a bounded number of times. ``stack`` closes the two in the end."""
    def join() -> tuple[Client, int]:
        client = stack.enter_context(connect(url, origin=origin, ssl=context))
        return client, owner(client, port, workers)

    first = join()
    for _ in range(MAX_PROBES):
        other = join()
        if other[1] != first[1]:
            return [first, other]
        other[0].close()
    first[0].close()
    raise AssertionError(f"{MAX_PROBES} connections all served by worker {first[1]}")


def start_browser() -> webdriver.Chrome:
    """Headless Chromium, accepting the tutorial's self-signed certificate as its user
    does (the warning's "proceed")."""
    return start_chromium("--ignore-certificate-errors", console_log=True)


def log_items(driver: webdriver.Chrome) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#log li")]


def connected(driver: webdriver.Chrome, old: bool = True) -> None:
    """Until the page's socket is open (a new one, with ``old=False``: not the one
    ``window.before`` holds)."""
    script = "return socket.readyState === WebSocket.OPEN" + (
        "" if old else " && socket !== window.before")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(script))


def browser_chats(driver: webdriver.Chrome, page: str, url: str, origin: str,
                  **kwargs) -> None:
    """The room's page in the browser, styled by its static CSS, and a client of the same
    room: what one sends, the other shows."""
    driver.get(page)
    connected(driver)
    font = driver.find_element(By.TAG_NAME, "body").value_of_css_property("font-family")
    assert font == "sans-serif", font  # chat.css applied
    with connect(url, origin=origin, **kwargs) as bob:
        driver.find_element(By.ID, "message").send_keys("from the browser")
        driver.find_element(By.TAG_NAME, "button").click()
        assert json.loads(bob.recv(timeout=30)) == {"message": "from the browser"}
        bob.send(json.dumps({"message": "to the browser"}))
        WebDriverWait(driver, 30).until(
            lambda d: log_items(d) == ["from the browser", "to the browser"])
    severe = [entry["message"] for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and "/favicon.ico " not in entry["message"]]
    assert severe == [], severe


def test_every_code_block_is_a_file_or_a_step():
    for block in blocks():
        assert (block.caption is None) != (block.step is None), (
            f"line {block.line}: a code block is either a file (:caption:) or a step "
            f"(.. tutorial-step: NAME), or sample output in a literal block (::)")


def test_the_tutorial_builds_with_sphinx_warnings_as_errors(tmp_path):
    """Standard directives only, valid reStructuredText, no dangling reference: the
    document as the one page of a Sphinx site, warnings as errors."""
    pytest.importorskip("sphinx")
    source = tmp_path / "source"
    source.mkdir()
    (source / "conf.py").write_text('project = "django-daphne"\nroot_doc = "tutorial"\n')
    (source / "tutorial.rst").write_text(TEXT)
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
         str(source), str(tmp_path / "html")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_following_the_tutorial(tmp_path, redis_url):
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix) or not (venv / "bin" / "activate").exists():
        pytest.skip("the suite runs outside a virtual environment: none to stand in for the "
                    "tutorial's")
    dev_port, tls_port = free_port(), free_port()
    state = tmp_path / "state"
    state.mkdir()
    env = {name: value for name, value in os.environ.items()
           if name not in ("VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    # this checkout's django_daphne, whatever the suite's environment was installed from
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", REDIS_URL=redis_url)
    shell = Shell(tmp_path, env, state)
    project = tmp_path / "chat-tutorial"
    css = file_block("chat/static/chat/chat.css")
    servers: list[ManageProcess] = []
    clients: list[Client] = []
    context = None
    server = None
    steps_run = []

    def step_install(text: str) -> None:
        text = replace(text, "python3 -m venv .venv", f"ln -s {shlex.quote(str(venv))} .venv")
        text = replace(text, 'pip install "django-daphne[channels,redis]"',
                       'python -c "import django_daphne, channels, channels_redis"')
        shell.run(text)
        assert shell.cwd == project
        where = shell.run('python -c "import django_daphne; print(django_daphne.__file__)"')
        assert where.strip() == str(ROOT / "django_daphne" / "__init__.py")

    def step_runserver(text: str) -> None:
        text = replace(text, "python manage.py runserver",
                       f"python manage.py runserver 127.0.0.1:{dev_port}")
        dev = shell.start(text)
        servers.append(dev)
        assert dev.wait_for(BANNER_RE).group(2) == str(dev_port)
        base = f"http://127.0.0.1:{dev_port}"
        in_doc("http://127.0.0.1:8000/chat/lobby/")
        page = httpx.get(base + "/chat/lobby/", timeout=30)
        assert page.status_code == 200, page.text
        assert "<h1>Room lobby</h1>" in page.text
        assert 'href="/static/chat/chat.css"' in page.text
        assert httpx.get(base + "/static/chat/chat.css", timeout=30).text == css
        url = f"ws://127.0.0.1:{dev_port}/ws/chat/lobby/"
        with connect(url, origin=base) as ada, connect(url, origin=base) as bob:
            exchange(ada, bob)
        browser_chats(browser(), base + "/chat/lobby/", url, base)
        browser().get("about:blank")  # its WebSocket closed before the server stops
        dev.signal(signal.SIGINT, group=True)  # Ctrl-C, to the terminal's process group
        assert dev.wait_exit() == 0, dev.output

    def step_check(text: str) -> None:
        output = shell.run(text)
        in_doc("System check identified no issues (1 silenced).")
        assert "System check identified no issues (1 silenced)." in output, output
        assert (project / "staticfiles" / "chat" / "chat.css").read_text() == css

    def step_serve(text: str) -> None:
        nonlocal server, context
        server = shell.start(text)
        servers.append(server)
        ready = server.wait_for(r"\[(\d+)\] Server ready \(2 workers: (\d+), (\d+)\)")
        assert int(ready.group(1)) == server.proc.pid  # the supervisor: this process
        assert (project / "daphne.pid").read_text() == f"{server.proc.pid}\n"
        workers = {int(ready.group(2)), int(ready.group(3))}
        # the sample output's first line, as this server writes it
        in_doc(f"[{SAMPLE_PID}] Listening on TLS address 127.0.0.1:8443")
        assert f"[{server.proc.pid}] Listening on TLS address 127.0.0.1:{tls_port}" \
            in server.lines[0], server.output
        base = f"https://127.0.0.1:{tls_port}"
        in_doc("https://127.0.0.1:8443/chat/lobby/")
        context = ssl.create_default_context(cafile=str(project / "cert.pem"))
        with httpx.Client(http2=True, verify=context, timeout=30) as client:
            page = client.get(base + "/chat/lobby/")
            assert page.status_code == 200, page.text
            assert page.http_version == "HTTP/2"
            assert 'href="/static/chat/chat.css"' in page.text
            static = client.get(base + "/static/chat/chat.css")  # DEBUG is off: --static
            assert static.status_code == 200 and static.text == css
            assert static.http_version == "HTTP/2" and "etag" in static.headers
        # a new context: httpx offered h2 by ALPN on that one
        context = ssl.create_default_context(cafile=str(project / "cert.pem"))
        pair = on_two_workers(stack, f"wss://127.0.0.1:{tls_port}/ws/chat/lobby/", base,
                              context, tls_port, workers)
        clients.extend(client for client, _ in pair)
        assert {pid for _, pid in pair} == workers
        exchange(*clients)  # from one worker to the other: through Redis
        # an idle room stays open past the layer's wait for messages (BZPOPMIN, 5 s at a
        # time: a client read timeout as long, redis-py 8's default, made it crash), then
        # talks again
        with pytest.raises(TimeoutError):
            clients[0].recv(timeout=IDLE)
        exchange(*clients)
        # the page, over HTTPS, its socket over wss; it stays open over the reload
        browser_chats(browser(), base + "/chat/lobby/",
                      f"wss://127.0.0.1:{tls_port}/ws/chat/lobby/", base, ssl=context)
        for client in clients:  # in the room too, on both workers
            assert [json.loads(client.recv(timeout=30))["message"] for _ in range(2)] \
                == ["from the browser", "to the browser"]

    def step_curl(text: str) -> None:
        output = shell.run(replace(text, "https://127.0.0.1:8443/",
                                   f"https://127.0.0.1:{tls_port}/"))
        in_doc("(``HTTP/2 200``)")
        # (the status line, after curl's progress meter: a terminal would not show it)
        assert "HTTP/2 200" in [line.strip() for line in output.splitlines()], output

    def step_reload(text: str) -> None:
        assert server is not None and context is not None
        mark = server.line_count()
        browser().execute_script("window.before = socket")
        in_doc('kill -HUP "$(cat daphne.pid)"')
        shell.run(text)  # (the pid from the pid file the settings name)
        done = server.wait_for(r"Reloaded: workers (\d+), (\d+) serve; (\d+), (\d+) drain",
                               start=mark)
        new, old = {int(done.group(1)), int(done.group(2))}, \
            {int(done.group(3)), int(done.group(4))}
        # the old workers close their WebSockets with 1001 (going away), and exit
        for client in clients:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        for pid in old:
            server.wait_for(rf"Worker {pid} stopped", start=mark)
        clients.clear()
        base = f"https://127.0.0.1:{tls_port}"
        pair = on_two_workers(stack, f"wss://127.0.0.1:{tls_port}/ws/chat/lobby/", base,
                              context, tls_port, new)
        clients.extend(client for client, _ in pair)
        exchange(*clients)
        # the page connected again by itself, to a new worker, and gets the room's messages
        connected(browser(), old=False)
        clients[0].send(json.dumps({"message": "after the reload"}))
        WebDriverWait(browser(), 30).until(
            lambda d: log_items(d)[-1:] == ["after the reload"])
        browser().get("about:blank")

    def step_stop(text: str) -> None:
        assert server is not None
        in_doc('kill -TERM "$(cat daphne.pid)"')
        shell.run(text)
        assert server.wait_exit() == 0, server.output
        assert not (project / "daphne.pid").exists()
        assert server.lines[-1].endswith(f"[{server.proc.pid}] Server stopped"), server.output
        assert "Traceback" not in server.output and "ERROR" not in server.output, \
            server.output

    handlers = {"install": step_install, "runserver": step_runserver, "check": step_check,
                "serve": step_serve, "curl": step_curl, "reload": step_reload,
                "stop": step_stop}
    changes = {"mysite/production.py": [("ssl:8443:", f"ssl:{tls_port}:")]}
    stack = ExitStack()
    drivers: list[webdriver.Chrome] = []

    def browser() -> webdriver.Chrome:
        if not drivers:
            drivers.append(start_browser())
        return drivers[0]

    try:
        for block in blocks():
            if block.caption is not None:
                text = block.text
                for old, new in changes.get(block.caption, []):
                    text = replace(text, old, new)
                apply_file(shell.cwd, block.caption, text)
            else:
                assert block.step is not None
                handlers.get(block.step, lambda text: shell.run(text))(block.text)
                steps_run.append(block.step)
    finally:
        for driver in drivers:
            driver.quit()
        stack.close()
        for process in servers:
            process.stop()
            # shown when the test fails
            print(f"--- {' '.join(process.args)}\n{process.output}")
    assert steps_run == ["install", "startproject", "migrate", "runserver", "certificate",
                         "environment", "check", "serve", "curl", "reload", "stop"]

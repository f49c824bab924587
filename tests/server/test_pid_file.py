"""--pid-file: the main process's pid (the supervisor's under --workers) is in the file
while the server runs, through a reload, and gone once it exits, whatever stops it: a
SIGTERM while serving, or during the application's startup, or a failure to listen.  A file
left by a server that was killed is replaced; one that names a running process, or a path
that cannot be written, stops the start with an error that names the file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.lifespan import Gate

APP = "tests.metrics_apps:app"  # (its lifespan startup waits on a Gate when told to)


def named_pid(path) -> int:
    return int(path.read_text())


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_single_process_writes_its_pid_and_removes_it(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    server = start_server("--pid-file", str(pid_file))
    assert named_pid(pid_file) == server.proc.pid
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    assert server.http.get(server.url + "/echo").status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not pid_file.exists()
    assert not list(tmp_path.iterdir())  # (nor its temporary file)


def test_workers_name_the_supervisor_through_a_reload(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    server = start_server("--workers", "2", "--pid-file", str(pid_file))
    first = server.wait_for(r"Server ready \(2 workers: ([\d, ]+)\)").group(1)
    assert named_pid(pid_file) == server.proc.pid
    assert str(server.proc.pid) not in first.split(", ")
    os.kill(named_pid(pid_file), signal.SIGHUP)  # as a script would, from the file
    reloaded = server.wait_for(r"Reloaded: workers ([\d, ]+) serve").group(1)
    assert set(reloaded.split(", ")).isdisjoint(first.split(", "))
    assert named_pid(pid_file) == server.proc.pid
    os.kill(named_pid(pid_file), signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not pid_file.exists()


def test_a_killed_servers_file_is_replaced(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    killed = start_server("--pid-file", str(pid_file))
    killed.proc.kill()
    killed.wait_exit()
    assert named_pid(pid_file) == killed.proc.pid  # left behind, naming a process gone
    server = start_server("--pid-file", str(pid_file))
    assert named_pid(pid_file) == server.proc.pid
    assert f"Replacing the pid file {pid_file}: process {killed.proc.pid}" in server.output
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not pid_file.exists()


def test_a_file_naming_a_running_process_stops_the_start(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: running
    for workers in ((), ("--workers", "2")):
        server = start_server(*workers, "--pid-file", str(pid_file), ready=False)
        assert server.wait_exit() == 1
        assert (f"The pid file {pid_file} (--pid-file) names process {os.getpid()}, "
                "which is running") in server.output
        assert "Listening on" not in server.output
        assert named_pid(pid_file) == os.getpid()  # untouched


def test_a_stale_or_unreadable_file_is_replaced(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    for content in (f"{dead_pid()}\n", "", "not a pid\n"):
        pid_file.write_text(content)
        server = start_server("--pid-file", str(pid_file))
        assert named_pid(pid_file) == server.proc.pid
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert not pid_file.exists()


def test_an_unwritable_path_is_an_error_naming_it(start_server, tmp_path):
    missing = tmp_path / "no-such-directory" / "daphne.pid"
    server = start_server("--pid-file", str(missing), ready=False)
    assert server.wait_exit() == 1
    assert f"Cannot write the pid file {missing} (--pid-file): " in server.output
    assert "No such file or directory" in server.output
    assert "Listening on" not in server.output


def test_a_failure_to_listen_removes_it(start_server, tmp_path):
    pid_file = tmp_path / "daphne.pid"
    holder = start_server()
    for workers in ((), ("--workers", "2")):
        server = start_server(*workers, "-p", str(holder.port), "--pid-file", str(pid_file),
                              ready=False)
        assert server.wait_exit() == 1
        assert "address already in use" in server.output
        assert not pid_file.exists()


def test_sigterm_during_the_applications_startup_removes_it(start_server, tmp_path):
    """The wrong moment: the file is written, the application's lifespan startup has not
    finished (held by the test), and the stop comes."""
    for workers in ((), ("--workers", "2")):
        pid_file = tmp_path / "daphne.pid"
        directory = tmp_path / ("workers" if workers else "single")
        directory.mkdir()
        gate = Gate(directory)
        server = start_server(*workers, "--pid-file", str(pid_file), app=APP,
                              env={"METRICS_TEST_GATE": gate.path}, ready=False)
        held = gate.waiting(2 if workers else 1)
        assert named_pid(pid_file) == server.proc.pid
        server.signal(signal.SIGTERM)
        gate.release(held)
        assert server.wait_exit() == 0
        assert not pid_file.exists()


def test_the_environment_sets_it(start_server, tmp_path):
    pid_file = tmp_path / "from-env.pid"
    server = start_server(env={"DJANGO_DAPHNE_PID_FILE": str(pid_file)})
    assert named_pid(pid_file) == server.proc.pid
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not pid_file.exists()


def test_a_stop_before_the_server_handles_signals_removes_it(tmp_path):
    """A SIGTERM between the file's writing and the server's own signal handlers meets
    the command's startup handler (cli.stop_during_startup), which removes it first."""
    pid_file = tmp_path / "daphne.pid"
    code = (
        "import os, signal\n"
        "from django_daphne.server.cli import stop_during_startup\n"
        "from django_daphne.server.pid_file import PidFile\n"
        "signal.signal(signal.SIGTERM, stop_during_startup)\n"
        f"PidFile({str(pid_file)!r}).write()\n"
        "print(open(%r).read(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n" % str(pid_file)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == -signal.SIGTERM
    assert done.stdout.strip().isdigit()  # it was written
    assert not pid_file.exists()

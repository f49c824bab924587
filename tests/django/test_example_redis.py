"""Chat rooms shared by two server processes through a real Redis: the example project's
channel layer is channels_redis when REDIS_URL is set."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from ..django_helpers import LISTEN_RE, ManageProcess, run_manage

IDLE = 6.5  # seconds a room stays quiet: longer than channels_redis's 5 s BZPOPMIN wait


def start_server(env) -> tuple[ManageProcess, str]:
    server = ManageProcess(["daphne", "-p", "0"], env=env)
    match = server.wait_for(LISTEN_RE)
    server.wait_for("Server ready")
    return server, f"127.0.0.1:{match.group(2)}"


def test_message_crosses_server_processes_through_redis(tmp_path, redis_url):
    env = {"EXAMPLE_DB": str(tmp_path / "db.sqlite3"), "REDIS_URL": redis_url}
    assert run_manage("migrate", "-v", "0", env=env).returncode == 0
    (first, first_address), (second, second_address) = start_server(env), start_server(env)
    try:
        def join(address):
            return connect(f"ws://{address}/ws/chat/lobby/", origin=f"http://{address}",
                           open_timeout=30)

        with join(first_address) as ada, join(second_address) as bob:
            ada.send(json.dumps({"author": "ada", "text": "over redis"}))
            assert json.loads(bob.recv(timeout=10)) == {"author": "ada", "text": "over redis"}
            bob.send(json.dumps({"author": "bob", "text": "and back"}))
            received = [json.loads(ada.recv(timeout=10)) for _ in range(2)]
            assert received == [{"author": "ada", "text": "over redis"},
                                {"author": "bob", "text": "and back"}]
            # idle longer than the layer's 5 s wait for a message: with redis-py 8's
            # default read timeout (5 s) an idle consumer was closed with 1011
            assert json.loads(bob.recv(timeout=10))["text"] == "and back"  # his own
            with pytest.raises(TimeoutError):
                bob.recv(timeout=IDLE)
            ada.send(json.dumps({"author": "ada", "text": "still here"}))
            assert json.loads(bob.recv(timeout=10))["text"] == "still here"
    finally:
        first.stop()
        second.stop()


def test_without_redis_url_the_layer_is_in_memory(tmp_path):
    result = run_manage(
        "shell", "-c",
        "from django.conf import settings; print(settings.CHANNEL_LAYERS['default']['BACKEND'])",
        env={"EXAMPLE_DB": str(tmp_path / "db.sqlite3")},
    )
    assert result.stdout.strip().splitlines()[-1] == "channels.layers.InMemoryChannelLayer"

"""The chat room over real WebSockets, served by django-daphne's live-server test case."""

import json

import httpx
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from django_daphne.testing import DaphneLiveServerTestCase
from example_project.chat.models import Message


class ChatTests(DaphneLiveServerTestCase):
    def connect(self, room="lobby", origin=None):
        return connect(
            f"{self.live_server_ws_url}/ws/chat/{room}/",
            origin=origin or self.live_server_url, open_timeout=30, close_timeout=10,
        )

    def test_message_is_broadcast_to_everyone_in_the_room(self):
        with self.connect() as ada, self.connect() as bob, self.connect("elsewhere") as eve:
            ada.send(json.dumps({"author": "ada", "text": "hello, room"}))
            expected = {"author": "ada", "text": "hello, room"}
            self.assertEqual(json.loads(bob.recv(timeout=10)), expected)
            self.assertEqual(json.loads(ada.recv(timeout=10)), expected)
            # another room hears nothing: its next message is its own
            eve.send(json.dumps({"author": "eve", "text": "anyone?"}))
            self.assertEqual(json.loads(eve.recv(timeout=10))["author"], "eve")
        stored = list(Message.objects.values_list("room", "author", "text"))
        self.assertEqual(stored, [("lobby", "ada", "hello, room"), ("elsewhere", "eve", "anyone?")])
        # a newcomer's page shows the history
        self.assertIn("hello, room", httpx.get(self.live_server_url + "/chat/lobby/").text)

    def test_empty_message_is_answered_with_an_error(self):
        with self.connect() as ada:
            ada.send(json.dumps({"author": "ada", "text": "   "}))
            self.assertEqual(json.loads(ada.recv(timeout=10)), {"error": "empty message"})
        self.assertFalse(Message.objects.exists())

    def test_foreign_origin_is_refused(self):
        with self.assertRaises(InvalidStatus) as refused:
            self.connect(origin="http://evil.example").close()
        self.assertEqual(refused.exception.response.status_code, 403)

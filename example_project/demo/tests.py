"""The example views over real HTTP, served by django-daphne through its live-server test
case (run with ``./manage.py test example_project``)."""

import hashlib
import re

import httpx
from django.contrib.auth.models import User

from django_daphne.testing import DaphneLiveServerTestCase
from example_project.chat.models import Message


class ExampleViewsTests(DaphneLiveServerTestCase):
    def get(self, path, **kwargs):
        return httpx.get(self.live_server_url + path, timeout=30, **kwargs)

    def test_home_page_with_its_static_files_and_lifespan_state(self):
        page = self.get("/")
        self.assertEqual(page.status_code, 200)
        self.assertIn("Lifespan startup ran at", page.text)
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
            response = self.get(asset)
            self.assertEqual(response.status_code, 200, asset)
        self.assertIn("JavaScript loaded", self.get("/static/demo/site.js").text)

    def test_async_view_runs_on_the_event_loop(self):
        body = self.get("/async/").json()
        self.assertEqual(body["view"], "async")
        self.assertEqual(body["thread"], "MainThread")

    def test_sync_view_runs_in_a_worker_thread(self):
        body = self.get("/sync/").json()
        self.assertEqual(body["view"], "sync")
        self.assertNotEqual(body["thread"], "MainThread")

    def test_json_view(self):
        response = self.get("/json/")
        self.assertEqual(response.headers["content-type"], "application/json")
        self.assertEqual(response.json(), {"message": "Hello, World!"})

    def test_streaming_response_is_chunked(self):
        with httpx.stream("GET", self.live_server_url + "/stream/?count=4&delay=0",
                          timeout=30) as response:
            self.assertEqual(response.headers["transfer-encoding"], "chunked")
            text = "".join(response.iter_text())
        self.assertEqual(text.splitlines(), [f"line {n} of 4" for n in range(1, 5)])

    def test_upload_form(self):
        with httpx.Client(base_url=self.live_server_url, timeout=30) as client:
            form = client.get("/upload/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            data = bytes(range(256)) * 12_000  # 3 MB: bigger than the in-memory limit
            response = client.post(
                "/upload/", data={"csrfmiddlewaretoken": token},
                files={"file": ("data.bin", data)}, headers={"Accept": "application/json"},
            )
        self.assertEqual(response.status_code, 200, response.text[:500])
        self.assertEqual(response.json(), {
            "name": "data.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        })

    def test_upload_without_csrf_token_is_refused(self):
        response = httpx.post(self.live_server_url + "/upload/", files={"file": ("a", b"x")})
        self.assertEqual(response.status_code, 403)

    def test_admin_on_the_test_database(self):
        User.objects.create_superuser("admin", "admin@example.com", "a-long-password")
        Message.objects.create(room="lobby", author="ada", text="stored by the test")
        with httpx.Client(base_url=self.live_server_url, timeout=30) as client:
            login = client.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
            response = client.post("/admin/login/?next=/admin/chat/message/", data={
                "csrfmiddlewaretoken": token, "username": "admin",
                "password": "a-long-password", "next": "/admin/chat/message/",
            }, follow_redirects=True)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.url.path, "/admin/chat/message/")
        self.assertIn("stored by the test", response.text)

    def test_chat_room_page_shows_the_history(self):
        Message.objects.create(room="lobby", author="ada", text="hello from the database")
        page = self.get("/chat/lobby/")
        self.assertEqual(page.status_code, 200)
        self.assertIn("hello from the database", page.text)
        self.assertIn("/static/chat/chat.js", page.text)
        self.assertEqual(self.get("/static/chat/chat.js").status_code, 200)

"""Reaching a server's metrics and health listener (--metrics-endpoint) over TCP or a UNIX
socket, and reading its scrape with prometheus_client's own parser."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

LISTENER_RE = r"Metrics and health checks on (http://([\d.]+):(\d+)|unix:(\S+))"

Samples = dict[tuple[str, frozenset], float]


class Listener:
    """The listener a server logged (``Metrics and health checks on ...``)."""

    def __init__(self, server) -> None:
        match = server.wait_for(LISTENER_RE)
        self.unix_path = match.group(4)
        self.address = None if self.unix_path else (match.group(2), int(match.group(3)))

    def get(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        """(status, content type, body) of one GET on a fresh connection."""
        if self.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(self.unix_path)
        else:
            sock = socket.create_connection(self.address, timeout=10)
        with sock:
            extra = f"Accept: {accept}\r\n" if accept else ""
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: metrics\r\n{extra}\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        content_type = next((line.split(":", 1)[1].strip() for line in lines[1:]
                             if line.lower().startswith("content-type:")), "")
        return status, content_type, body

    def samples(self) -> Samples:
        """Every sample of a scrape, by (sample name, its labels)."""
        status, _, body = self.get("/metrics")
        assert status == 200, body
        found: Samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                found[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return found

    def wait_until(self, condition: Callable[[Samples], bool], what: str,
                   timeout: float = 20.0) -> Samples:
        """Scrape until ``condition`` holds (the workers fold their counts once a second):
        the scrape that satisfied it, or fail showing the last one."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.samples()
            if condition(samples):
                return samples
            if time.monotonic() > deadline:
                shown = "\n".join(f"{name}{dict(labels)} {value}"
                                  for (name, labels), value in sorted(samples.items(),
                                                                      key=str)
                                  if name.startswith("daphne_"))
                raise AssertionError(f"no scrape where {what}; the last:\n{shown}")
            time.sleep(0.1)  # between two polls of the condition, not in its place

    def wait_health(self, path: str, status: int, timeout: float = 20.0) -> bytes:
        """Ask ``path`` until it answers ``status``; the body of that answer."""
        deadline = time.monotonic() + timeout
        while True:
            got, _, body = self.get(path)
            if got == status:
                return body
            assert time.monotonic() < deadline, f"{path} still answers {got} {body!r}"
            time.sleep(0.05)  # between two polls of the condition, not in its place


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def family_names(samples: Samples) -> set[str]:
    return {re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name, _ in samples}

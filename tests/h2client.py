"""A small blocking HTTP/2 client over a real socket, built on the h2 library, for tests that
need to see frames: SETTINGS, RST_STREAM, GOAWAY, trailers, flow-control windows. It can
also write hand-made frames that h2 itself would never send (the attack cases)."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class GoAway:
    error_code: int
    last_stream_id: int


@dataclass
class Response:
    """What arrived on one stream."""

    headers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list | None = None
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code, when the server reset the stream

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H2Client:
    """One HTTP/2 connection. ``auto_ack=False`` never opens any flow-control window."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, settings: dict | None = None,
                 tls: ssl.SSLContext | None = None, auto_ack: bool = True,
                 timeout: float = 5.0, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False,
        ))
        self.h2.initiate_connection()
        if settings:  # in effect here once the server acknowledges them, as h2 would have it
            self.h2.update_settings(settings)
        self.responses: dict[int, Response] = {}
        self.server_settings: dict[int, int] = {}
        self.goaway: GoAway | None = None
        self.error: Exception | None = None  # what h2 found wrong in the server's frames
        self.buffer = bytearray()
        self.closed = False
        self.received_data = 0  # DATA payload bytes, all streams
        self.pings = 0  # PING ACKs received
        self.window_updates = 0
        self.flush()

    # -- sending

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data: bytes | Frame) -> None:
        """Write bytes (or a hyperframe Frame) as they are, past h2's own rules."""
        if isinstance(data, Frame):
            data = data.serialize()
        self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", *, headers: list | None = None,
                body: bytes | None = None, end_stream: bool = True,
                authority: str = "localhost", scheme: str = "http") -> int:
        fields = [(b":method", method.encode()), (b":scheme", scheme.encode()),
                  (b":authority", authority.encode()), (b":path", path.encode())]
        fields.extend(headers or [])
        stream_id = self.send_headers(fields, end_stream=end_stream and body is None)
        if body is not None:
            self.send_data(stream_id, body, end_stream=end_stream)
        return stream_id

    def send_headers(self, fields: list, end_stream: bool = True) -> int:
        """Open the next stream with exactly these header fields."""
        stream_id = self.h2.get_next_available_stream_id()
        self.responses[stream_id] = Response()
        self.h2.send_headers(stream_id, fields, end_stream=end_stream)
        self.flush()
        return stream_id

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.h2.send_data(stream_id, data, end_stream=end_stream)
        self.flush()

    def upload(self, stream_id: int, data: bytes, end_stream: bool = True,
               timeout: float = 10.0) -> None:
        """Send a body as the server's flow-control windows let it through."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            room = min(self.h2.local_flow_control_window(stream_id),
                       self.h2.max_outbound_frame_size, len(view))
            if room:
                self.send_data(stream_id, bytes(view[:room]), end_stream and room == len(view))
                view = view[room:]
            else:
                assert time.monotonic() < deadline, "the server's window stayed closed"
                self.pump(0.5)
        if not data and end_stream:
            self.send_data(stream_id, b"", True)

    def reset(self, stream_id: int, code: int = 8) -> None:  # 8: CANCEL
        self.h2.reset_stream(stream_id, code)
        self.flush()

    def open_window(self, size: int, stream_id: int | None = None) -> None:
        self.h2.increment_flow_control_window(size, stream_id)
        self.flush()

    # -- receiving

    def pump(self, timeout: float | None = None) -> bool:
        """Read once and handle what came; False when the read timed out or the server closed."""
        if self.closed:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        # GOAWAY is taken out before h2 sees it: h2 would refuse every frame after it, and a
        # graceful GOAWAY is followed by the responses of the streams in flight
        buffer = self.buffer
        buffer += data
        frames = bytearray()
        while len(buffer) >= 9:
            end = 9 + int.from_bytes(buffer[:3], "big")
            if len(buffer) < end:
                break
            if buffer[3] == 0x7:
                self.goaway = GoAway(int.from_bytes(buffer[13:17], "big"),
                                     int.from_bytes(buffer[9:13], "big") & 0x7FFFFFFF)
            else:
                frames += buffer[:end]
            del buffer[:end]
        try:
            events = self.h2.receive_data(bytes(frames))
        except h2.exceptions.ProtocolError as exc:
            self.error = exc
            events = []
        for event in events:
            self._handle(event)
        self.flush()
        return True

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        response = self.responses.setdefault(stream_id, Response()) if stream_id else None
        if isinstance(event, h2.events.ResponseReceived):
            response.headers = event.headers
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            self.received_data += len(event.data)
            if self.auto_ack and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = event.headers
        elif isinstance(event, h2.events.StreamEnded):
            response.ended = True
        elif isinstance(event, h2.events.StreamReset):
            response.reset = event.error_code
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.server_settings[int(code)] = change.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings += 1
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_updates += 1

    def wait(self, condition, timeout: float = 10.0, what: str = "condition") -> None:
        """Read until ``condition()`` holds; fail, showing the state, after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0 or (self.closed and not condition()):
                raise AssertionError(
                    f"{what} not reached (closed={self.closed}, goaway={self.goaway}, "
                    f"error={self.error!r}, responses={self.responses})"
                )
            self.pump(min(left, 0.5))

    def response(self, stream_id: int, timeout: float = 10.0) -> Response:
        response = self.responses[stream_id]
        self.wait(lambda: response.done, timeout, f"end of stream {stream_id}")
        return response

    def wait_goaway(self, timeout: float = 10.0) -> GoAway:
        self.wait(lambda: self.goaway is not None, timeout, "GOAWAY")
        return self.goaway

    def wait_last_goaway(self, timeout: float = 10.0) -> GoAway:
        """The GOAWAY that names the last stream taken: a graceful stop's second, after the
        first that takes every stream (2^31-1) until its PING is answered (RFC 9113 6.8)."""
        self.wait(lambda: self.goaway is not None and self.goaway.last_stream_id < 2**31 - 1,
                  timeout, "the last GOAWAY")
        return self.goaway

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Read (and drop) until the server closes the socket."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            assert time.monotonic() < deadline, "the server kept the connection open"
            self.pump(0.5)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get(port: int, path: str, **kwargs) -> Response:
    """One request on a fresh connection."""
    with H2Client(port, **kwargs) as client:
        return client.response(client.request(path))


SETTINGS = h2.settings.SettingCodes

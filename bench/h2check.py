"""One HTTP/2 GET over a real socket with the ``h2`` library, to check a server answers the
HTTP/2 workloads correctly before h2load loads it (h2load counts status codes, never bodies).

Over TLS the connection must negotiate ``h2`` by ALPN; over cleartext it opens with the
HTTP/2 preface straight away (h2c with prior knowledge, as h2load does).
"""

from __future__ import annotations

import socket
import ssl


class H2CheckError(RuntimeError):
    """The server did not serve the request over HTTP/2."""


def h2_get(port: int, path: str, tls: bool, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` over one new HTTP/2 connection."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2", "http/1.1"])
            sock = context.wrap_socket(sock, server_hostname="localhost")
            chosen = sock.selected_alpn_protocol()
            if chosen != "h2":
                raise H2CheckError(f"TLS ALPN chose {chosen or 'no protocol'}, not h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [
            (":method", "GET"), (":path", path), (":scheme", "https" if tls else "http"),
            (":authority", f"127.0.0.1:{port}"),
        ], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = None, bytearray()
        while True:
            data = sock.recv(65536)
            if not data:
                raise H2CheckError("the server closed the connection before the response ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    raise H2CheckError(f"stream reset (error code {event.error_code})")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise H2CheckError(f"GOAWAY (error code {event.error_code})")
                elif isinstance(event, h2.events.StreamEnded) and status is not None:
                    return status, bytes(body)
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.H2Error) as exc:
        raise H2CheckError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        sock.close()

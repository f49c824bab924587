"""The named timers of a connection, all fired by the server's one periodic sweep.

A :class:`~.connection.Connection` has one slot for the timer of the moment: ``timer``
names it and ``deadline`` says when it is due (None: nothing armed).  Arming one is two
attribute stores, never a ``callLater``: the sweep (``ServerState.sweep``) looks at every
connection's ``deadline`` once per interval and calls ``Connection.deadline_passed``, which
hands it to the handler that armed it (or, on a closing connection, ends it).  The send
timeout, which can run beside any of these, has a slot of its own (``stalled_until``).

==============  ==================================  ===========================================
timer           armed (and disarmed) in             when it fires
==============  ==================================  ===========================================
``OPENING``     HTTP1Handler.__init__ (first byte)  nothing came: closed, no answer
``HEADER``      HTTP1Handler._await_head (on_head)  a head arrived in part: 408, closed
``KEEP_ALIVE``  HTTP1Handler._await_request         idle between requests: closed
                (data_received)
``PING``        WebSocketConnection._arm            an idle peer is pinged
``PONG``        WebSocketConnection._arm            no pong: the WebSocket is dropped
``HTTP2``       Connection.start_http2 (its due     HTTP2Handler.deadline_passed: idle
                time: HTTP2Handler.update_deadline) (GOAWAY), a stream's window or body
                                                    (reset), a tunnel's PING or PONG
``DRAIN``       Connection.close                    the client did not take the rest: cut off
``LINGER``      Connection.close_after_error        the client did not close after an error
                                                    answer: cut off
``SEND``        Connection.pauseProducing           the client took nothing of our writes:
                (resumeProducing)                   cut off
==============  ==================================  ===========================================

A request's own timers (the application's time to answer and to return, the client's to send
the next piece of its body) are its stream's: ``HTTPStream.app_due`` and ``body_due``.
"""

from __future__ import annotations

import enum


class Timer(enum.Enum):
    """Which timer a connection's ``deadline`` is for (see the module docstring)."""

    OPENING = "opening"  # --header-timeout from the accept (a TLS handshake included)
    HEADER = "header"  # --header-timeout from a request head's first byte
    KEEP_ALIVE = "keep-alive"  # --keep-alive-timeout from a response's end
    PING = "ping"  # --ping-interval: the next keepalive check of a WebSocket
    PONG = "pong"  # --ping-timeout from a ping
    HTTP2 = "http2"  # the earliest of the HTTP/2 handler's own
    DRAIN = "drain"  # --send-timeout from our close
    LINGER = "linger"  # LINGER_SECONDS (or less) from an error answer
    SEND = "send"  # --send-timeout from the moment our writes stopped going out

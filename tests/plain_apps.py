"""Applications that behave like real frameworks in ways the server must cope with."""

import json


async def no_lifespan(scope, receive, send):
    """Like Django's ASGIHandler: raises on anything but HTTP (lifespan included)."""
    if scope["type"] != "http":
        raise ValueError("only http is supported by this application")
    body = json.dumps({"has_state": "state" in scope}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

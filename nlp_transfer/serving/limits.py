"""`BodySizeLimit`: an ASGI middleware that answers 413 to a request body over `max_bytes`.

A declared Content-Length over the limit is refused before a byte is read. A body without one
(chunked) is counted as it streams and refused at the chunk that passes the limit, so a client
cannot make the server buffer an unbounded body. The middleware sends the 413 itself and tells the
app the client went away; whatever the app then tries to send is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["BodySizeLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimit:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"The request body declares {declared} bytes (Content-Length)")
            return
        state = {"received": 0, "refused": False, "started": False}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not state["refused"]:
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    if not state["started"]:
                        await self._refuse(send, f"The request body passed {self.max_bytes} bytes while streaming")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 is the answer
            state["started"] = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send, what: str) -> None:
        message = (f"{what}; the limit is {self.max_bytes} bytes (max_body_bytes). Send fewer texts per request, "
                   "or start the server with a higher --max-body-bytes.")
        body = json.dumps({"detail": [{"type": "body_too_large", "loc": ["body"], "msg": message}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects a malformed length itself
    return None

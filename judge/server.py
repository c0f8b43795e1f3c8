"""waitress, bounded: a connection limit answered with a fast 503, and a request timeout.

waitress's own connection limit stops accepting when it is reached, so the next client
(a sentry, a health probe) waits in the kernel's backlog until a slot frees: a few
hundred idle sockets hold the judge offline, and its idle timeout never fires on a
socket that sends a byte now and then. This server keeps the listening socket
accepting and guards both ends:

  * a connection beyond `max_connections` (per worker) is answered at once with a JSON
    503 and `Retry-After`, then closed: the sentry's client counts it as a failure
    (retries, then its breaker and policy decide) instead of hanging on it;
  * a connection that has not delivered a whole request `request_timeout_s` after its
    first byte is closed, however it trickles; one that sends nothing is closed after
    waitress's `channel_timeout` (the idle timeout), as before.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 256
"""Open connections per worker before new ones get a 503. A sentry holds one for the
tens of milliseconds of a verification, so 256 is hundreds of devices at once; each
costs a file descriptor and a few KB (the default descriptor limit is 1024)."""

DEFAULT_REQUEST_TIMEOUT_S = 10
"""Seconds a client may take from a request's first byte to its last (headers and
body): a sentry sends a 70 KB clip in milliseconds on a LAN, and 10 s allows a very
poor link; a slow-loris client is cut off here."""

REFUSAL_LINGER_S = 2.0
"""Seconds a refused connection may take to read its 503 before it is closed."""

RETRY_AFTER_S = 1
"""Retry-After of the 503: the limit frees up as soon as a request ends."""

MAX_LINGERING_REFUSALS = 64
"""Refused connections being answered at once; beyond, new ones are closed unanswered."""

WAITRESS_OWN_SOCKETS = 2
"""The listener and waitress's trigger: waitress's own connection limit counts every
socket in its map, so it is set above ours plus these, and never stops accepting."""


def _refusal_response(max_connections: int) -> bytes:
    body = json.dumps({"error": {
        "code": "server_full",
        "message": f"the judge has {max_connections} open connections, its limit "
                   "(hark-judge serve --max-connections); retry shortly"}}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head + body


class _Refusal(wasyncore.dispatcher):
    """An over-limit connection: the 503 is written at once, then a FIN; what the client
    sent is read and dropped until it closes (closing with unread input would reset
    the connection, and the client could lose the answer), at most REFUSAL_LINGER_S."""

    def __init__(self, sock: socket.socket, map: dict, answer: bytes) -> None:
        super().__init__(sock, map=map)
        self._out = answer
        self._until = time.monotonic() + REFUSAL_LINGER_S

    def readable(self) -> bool:
        if time.monotonic() > self._until:
            self.close()
            return False
        return True

    def handle_read(self) -> None:
        self.recv(65536)  # an EOF closes it (dispatcher.recv calls handle_close)

    def writable(self) -> bool:
        return bool(self._out)

    def handle_write(self) -> None:
        sent = self.send(self._out)
        self._out = self._out[sent:]
        if not self._out:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                self.close()

    def handle_close(self) -> None:
        self.close()


class _TimedChannel(HTTPChannel):
    """waitress's channel, noting when the request it is reading began."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()  # waitress's clock (maintenance's `now`)
        return super().received(data)


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server on an already bound, listening `sock`, with a connection
    limit answered by a fast 503 and a request timeout (see the module docstring).

    max_connections: open connections per worker before new ones get a 503.
    request_timeout_s: seconds from a request's first byte to its last.
    idle_timeout_s: seconds a connection may send nothing (waitress's channel_timeout).
    Other waitress adjustments (threads, max_request_body_size...) pass through.
    """

    channel_class = _TimedChannel

    def __init__(self, app: Any, sock: socket.socket, *, max_connections: int,
                 request_timeout_s: float, idle_timeout_s: float, **adjustments: Any) -> None:
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.refused = 0  # connections answered 503 (the log shows the count)
        self._answer = _refusal_response(max_connections)
        super().__init__(
            app, _sock=sock, bind_socket=False,
            sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
            channel_timeout=idle_timeout_s,
            connection_limit=max_connections + MAX_LINGERING_REFUSALS + WAITRESS_OWN_SOCKETS,
            # waitress checks its timeouts only this often (seconds)
            cleanup_interval=max(1, int(min(idle_timeout_s, request_timeout_s) // 2)),
            **adjustments)

    def handle_accept(self) -> None:
        if len(self.active_channels) < self.max_connections:
            super().handle_accept()
            return
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn = accepted[0]
        self.refused += 1
        if self.refused & (self.refused - 1) == 0:  # 1, 2, 4...: visible, not a flood
            log.warning("%d open connections, the limit (--max-connections): %d new "
                        "connection(s) answered 503 so far", len(self.active_channels),
                        self.refused)
        lingering = len(self._map) - len(self.active_channels) - WAITRESS_OWN_SOCKETS
        if lingering >= MAX_LINGERING_REFUSALS:  # a flood of refusals: no answer for these
            conn.close()
            return
        _Refusal(conn, self._map, self._answer)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # the idle timeout
        cutoff = now - self.request_timeout_s
        for channel in list(self.active_channels.values()):
            if (not channel.requests and channel.request is not None
                    and channel.request_started < cutoff):
                channel.will_close = True  # the loop closes it on its next pass

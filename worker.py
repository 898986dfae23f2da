"""gunicorn's gevent worker, writing each answer's head and body to the socket in one call
and closing keep-alive connections after REQUESTS_PER_CONNECTION answers.

gunicorn sends the status line and headers, then the body, in two socket writes: two system
calls and two TCP segments for every small answer. The worker below holds the head back
until the body's first write and sends both together; an answer without a body is sent when
the request is done. Measured under wrk at concurrency 16 (iris, one row), four interleaved
pairs: about 2 % less server CPU per request (bench/RESULTS.md).
"""

from typing import Any

from gunicorn.workers.ggevent import GeventWorker

# Larger bodies go in their own write rather than being copied behind the head.
JOIN_BODIES_UNDER = 64 * 1024
# A gevent worker keeps every connection it accepted: connections opened together (a client's
# pool at start-up, or after a worker was replaced) can all land on one worker and stay there,
# leaving the other cores idle (measured: 16 connections opened just after the first answer
# all went to one worker, 2,900 instead of 5,300 requests/s). Closing each after this many
# answers (the client reconnects, and the freest worker accepts) spreads them again, as
# nginx's keepalive_requests does, with its default: at 100 the reconnections were the p99.
REQUESTS_PER_CONNECTION = 1000


class HeadWithBody:
    """A client socket whose first `sendall` (gunicorn's head) waits for the next one.

    Anything else asked of the socket (its file descriptor for sendfile, shutdown, send for
    an interim 100 Continue) first sends what is held, so bytes always leave in order."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._first = True

    def sendall(self, data: bytes) -> None:
        if self._first:
            self._first = False
            self._held = bytes(data)
            return
        if self._held is None:
            self._sock.sendall(data)
            return
        held, self._held = self._held, None
        if len(data) < JOIN_BODIES_UNDER:
            self._sock.sendall(held + data)
        else:
            self._sock.sendall(held)
            self._sock.sendall(data)

    def flush(self) -> None:
        """Send what is held, if anything."""
        if self._held is not None:
            held, self._held = self._held, None
            self._sock.sendall(held)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._sock, name)


class OneWriteGeventWorker(GeventWorker):
    """The gevent worker with HeadWithBody around each request's socket, closing each
    keep-alive connection after REQUESTS_PER_CONNECTION requests."""

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        if req.req_number >= REQUESTS_PER_CONNECTION:
            req.force_close()
        wrapped = HeadWithBody(sock)
        try:
            super().handle_request(listener_name, req, wrapped, addr)
        finally:
            wrapped.flush()

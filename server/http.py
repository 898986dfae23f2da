"""HTTP/1.1 on the worker's event loop: httptools (llhttp, C) parses each connection's bytes as
they arrive, and each request, once its body is in, is answered by the WSGI app in a greenlet
on the same loop (greenlets.py), one request of a connection after the other.

Everything a request costs happens on the worker's one Python thread, in a few system calls
(epoll, read, write). granian's Rust server, used before, handed every request from its thread
to a Python thread and to the loop and back (futex, eventfd, sched_yield): iris, one row,
concurrency 16, 223 µs of server CPU per request then, 138 µs now (bench/RESULTS.md).

Deadlines: a request's head must arrive within MODELFLY_READ_TIMEOUT of the connection being
ready for it (an idle kept connection is closed then), its body within MODELFLY_READ_TIMEOUT
of its head (else the guard answers 408). A body over its limit (ServerSettings.body_limit) is
not read: declared, it is refused at once; chunked, once past the limit; the connection is
closed after the 413, since its unread bytes cannot be told from the next request.
"""

import asyncio
import email.utils
import io
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httptools

from server.answers import STATUS_LINES, Answer, error
from server.greenlets import Pool
from server.guard import BodyCutShort, BodyTimeout, call_wsgi
from server.settings import ServerSettings

log = logging.getLogger("modelfly")

# A request's line and headers, at most; more is a 431.
HEAD_LIMIT = 64 << 10
# Deadlines are checked every quarter of MODELFLY_READ_TIMEOUT (a timer per request cost
# ~6 µs of its ~130): one is enforced within 1.25 times its length.
SWEEP = 0.25
# Seconds a closing connection reads and drops what its client still sends (see _linger).
LINGER = 2.0
# An answer at least this long is handed to the socket apart from its head (no copy of it).
LARGE = 1 << 16
# A worker that has connections accepts a new one this many seconds late, so that a worker
# without any takes it first: the worker already running won the race for the second of two
# bulk clients most of the time, and served both on one core (1,000,000-row V2 requests at
# concurrency 2: 8-9 M rows/s, against 12-15 M with a client on each worker). At 0.5 ms this VM
# often had not woken the idle worker yet (2 of 10 pairs of connections spread; 10 of 10 at 2).
ACCEPT_WHEN_BUSY = 0.002
ACCEPT_PAUSE = 0.5  # after the process ran out of file descriptors (or memory) to accept with


class HttpServer:
    """A worker's HTTP side: the app and settings its connections share, the count of its
    answers, and its stop. It accepts from the sockets given to `listen`; `connection` is the
    protocol factory for each accepted (or for loop.create_server)."""

    def __init__(self, app: Callable, settings: ServerSettings, base_environ: dict,
                 max_connections: int, close_every: int) -> None:
        self.app, self.settings, self.base_environ = app, settings, base_environ
        self.max_connections, self.close_every = max_connections, close_every
        self.connections: set[Connection] = set()
        self.listeners: list[socket.socket] = []
        self.shared = False  # other workers accept from the same sockets
        self.accepting = 0
        self.greenlets = Pool()
        self.answered = 0
        self.last_answer = 0.0
        self.draining = False  # every answer closes its connection (the worker is stopping)
        self._date = (0, "")

    def connection(self) -> "Connection":
        return Connection(self)

    def listen(self, listener: socket.socket, share: bool) -> None:
        """Accept connections from a listening socket, at once; or, where other workers
        `share` it and this one has connections, ACCEPT_WHEN_BUSY later."""
        listener.setblocking(False)
        self.listeners.append(listener)
        self.shared = self.shared or share
        self._wait_to_accept(listener)

    def stop_listening(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            loop.remove_reader(listener.fileno())
        self.listeners.clear()

    def _wait_to_accept(self, listener: socket.socket) -> None:
        if listener in self.listeners:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._ready_to_accept,
                                                  listener)

    def _ready_to_accept(self, listener: socket.socket) -> None:
        if self.shared and (self.connections or self.accepting):
            loop = asyncio.get_running_loop()
            loop.remove_reader(listener.fileno())
            loop.call_later(ACCEPT_WHEN_BUSY, self._accept, listener)
        else:
            self._accept(listener)

    def _accept(self, listener: socket.socket) -> None:
        """One connection, if another worker has not taken it (and this one still listens:
        a late accept may come due after stop_listening)."""
        if listener not in self.listeners:
            return
        loop = asyncio.get_running_loop()
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            self._wait_to_accept(listener)
            return
        except OSError as problem:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: the others may accept
            log.warning("cannot accept a connection: %s", problem)
            loop.remove_reader(listener.fileno())
            loop.call_later(ACCEPT_PAUSE, self._wait_to_accept, listener)
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepting += 1  # a connection until its transport is made, a loop turn later
        loop.create_task(loop.connect_accepted_socket(self.connection, client)
                         ).add_done_callback(self._accepted)
        self._wait_to_accept(listener)

    def _accepted(self, made: asyncio.Task) -> None:
        self.accepting -= 1
        if not made.cancelled() and made.exception() is not None:  # the client left at once
            log.debug("a connection ended as it was accepted: %s", made.exception())

    def date(self) -> str:
        """The Date header's value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def watch(self) -> None:
        """Check every connection's deadline, now and every SWEEP of the read timeout."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self.connections):
            connection.expire(now)
        loop.call_later(self.settings.read_timeout * SWEEP, self.watch)

    def close_idle(self, spare_unused: bool = False) -> None:
        """Close every connection that is not receiving or answering a request; with
        `spare_unused`, not those that have not begun a first one (its bytes may be coming)."""
        for connection in list(self.connections):
            if connection.idle() and not (spare_unused and connection.unused):
                connection.close()

    def busy(self) -> bool:
        """Whether a connection is being accepted, has a request in hand, or is open and
        has not begun a first one."""
        return self.accepting > 0 or any(
            not connection.idle() or (connection.unused and not connection.closing)
            for connection in self.connections)


class _Request:
    """A request being received: its environ, its body so far, and why it ended early."""

    __slots__ = ("environ", "chunks", "size", "limit", "early", "keep_alive", "head")

    def __init__(self) -> None:
        self.environ: dict = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.early: type[Exception] | str | None = None  # BodyTimeout, BodyCutShort, "refused"
        self.keep_alive = True
        self.head = True  # its line and headers are still arriving


class Connection(asyncio.Protocol):
    """One client's connection: requests parsed as their bytes come, answered in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.request: _Request | None = None  # the one being received
        self.url = b""
        self.head_size = 0
        self.waiting: deque[_Request | Answer] = deque()  # received, not answered yet
        self.answering = False
        self.closing = False  # no more requests are read: close after the answers queued
        self.last = False  # an answer said `Connection: close`: nothing more is answered
        self.lingering = False  # answered, closing: see _linger
        self.paused = False  # reading, while pipelined requests wait
        self.lost = False
        self.unused = True  # no request has begun on it yet
        self.deadline: float | None = None  # of the head or the body being received
        self.writable: asyncio.Future | None = None  # while the socket's buffer is full

    # the transport's side

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        if len(server.connections) >= server.max_connections:
            self.closing = self.last = True
            self._send(error(503, "the server has too many connections; try again"),
                       keep_alive=False, head_only=False)
            transport.close()
            return
        server.connections.add(self)
        peer = transport.get_extra_info("peername") or ("", 0)
        host = transport.get_extra_info("sockname") or ("", 0)
        self.base_environ = {**server.base_environ, "REMOTE_ADDR": str(peer[0]),
                             "SERVER_NAME": str(host[0]), "SERVER_PORT": str(host[1])}
        self._expect_head()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        request = self.request
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # answered as a plain request; what follows is not HTTP/1.1
            self.closing = True
            if self.idle():
                self._linger()
        except httptools.HttpParserInvalidMethodError:
            self._fail(501, "the request's method is not one HTTP defines")
        except httptools.HttpParserError as problem:
            self._fail(400, f"malformed HTTP request: {str(problem)[:80]}")
        else:
            # Bytes that went wholly to one head (not those of the read it began in, which
            # is at most 256 KiB): httptools itself would hold a head of any length.
            if request is not None and request is self.request and request.head:
                self.head_size += len(data)
                if self.head_size > HEAD_LIMIT:
                    self._fail(431, f"the request's line and headers are over {HEAD_LIMIT} "
                                    "bytes")

    def eof_received(self) -> bool:
        request = self.request
        if request is not None and not request.head and request.early is None:
            self._ended_early(request, BodyCutShort)  # a 400, on the half still open
        self.closing = True
        if self.lingering or not (self.answering or self.waiting):
            return False  # closed
        return True  # the sending half stays open for the answers

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        self.deadline = None
        self.server.connections.discard(self)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # the parser's side (httptools calls these from feed_data)

    def on_message_begin(self) -> None:
        self.unused = False
        self.request = _Request()
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").upper()
        if "_" in key:  # X_Token would pass as X-Token: dropped, as gunicorn does
            return
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ = self.request.environ
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text

    def on_headers_complete(self) -> None:
        request, parser = self.request, self.parser
        request.head = False
        self.head_size = 0
        self.deadline = None
        path, _, query = self.url.decode("latin-1").partition("?")
        if not path.startswith("/"):  # absolute form: http://host/path
            path = httptools.parse_url(self.url).path.decode("latin-1") or "/"
        environ = request.environ
        environ.update(self.base_environ)
        environ["REQUEST_METHOD"] = parser.get_method().decode("latin-1")
        environ["PATH_INFO"] = unquote(path, "latin-1") if "%" in path else path
        environ["QUERY_STRING"] = query
        environ["SERVER_PROTOCOL"] = f"HTTP/{parser.get_http_version()}"
        # HTTP/1.0's keep-alive is not offered: such a client is answered and closed
        request.keep_alive = parser.should_keep_alive() and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        request.limit, _ = self.server.settings.body_limit(environ)
        declared = environ.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > request.limit:
            # Not read: the guard refuses it from its Content-Length.
            self._ended_early(request, "refused")
            return
        if not declared and "HTTP_TRANSFER_ENCODING" not in environ:
            return  # no body
        if environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.deadline = self.loop.time() + self.server.settings.read_timeout

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request.early is not None:
            return
        request.chunks.append(body)
        request.size += len(body)
        if request.size > request.limit:  # chunked, past the limit: the guard answers 413
            self._ended_early(request, "refused")

    def on_message_complete(self) -> None:
        request = self.request
        if request.early is None:
            self.deadline = None
            self._received(request)

    # answering

    def idle(self) -> bool:
        return not self.answering and not self.waiting and self.request is None

    def close(self) -> None:
        self.closing = True
        self.deadline = None
        if self.transport is not None:
            self.transport.close()

    def _received(self, request: _Request) -> None:
        self.request = None
        self._queue(request)

    def _ended_early(self, request: _Request, why: type[Exception] | str) -> None:
        """The request is answered as it is (the guard says why); nothing more is read."""
        request.early = why
        self.closing = True
        self._received(request)

    def _queue(self, item: "_Request | Answer") -> None:
        self.waiting.append(item)
        if self.answering:
            if len(self.waiting) > 1 and not self.paused:  # pipelined: read no further
                self.paused = True
                self.transport.pause_reading()
            return
        self._answer_waiting()

    def _answer_waiting(self) -> None:
        while self.waiting and not self.lost and not self.last:
            item = self.waiting.popleft()
            if not isinstance(item, _Request):
                self._send(item, keep_alive=False, head_only=False)
                continue
            environ = item.environ
            if item.early in (BodyTimeout, BodyCutShort):
                environ["wsgi.input"] = _NoBody(item.early)
            else:
                environ["wsgi.input"] = io.BytesIO(b"".join(item.chunks))
            self.answering = True
            try:
                done, result = self.server.greenlets.call(call_wsgi, self.server.app, environ)
            except SystemExit:
                done, result = True, _stopped()
            if not done:
                self.loop.create_task(self._answer_later(result, item))
                return
            if not self._finish(result, item):
                return
        self.answering = False
        if self.closing or self.last:
            if not self.lost:
                self._linger()
            return
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.request is None or self.request.head:  # else its body's deadline runs
            self._expect_head()

    async def _answer_later(self, answering: Any, request: _Request) -> None:
        try:
            answer = await answering
        except SystemExit:
            answer = _stopped()
        if self._finish(answer, request):
            self._answer_waiting()

    def _finish(self, answer: Answer, request: _Request) -> bool:
        """Send the app's answer; False while a streamed answer is still being sent (it
        carries on with the waiting requests itself)."""
        server = self.server
        server.answered += 1
        server.last_answer = self.loop.time()
        keep_alive = (request.keep_alive and request.early is None and not server.draining
                      and server.answered % server.close_every != 0)
        head_only = request.environ["REQUEST_METHOD"] == "HEAD"
        if isinstance(answer[2], (bytes, list)) or head_only:
            if not isinstance(answer[2], (bytes, list)) and hasattr(answer[2], "close"):
                answer[2].close()
            self._send(answer, keep_alive, head_only)
            return True
        self.loop.create_task(self._stream(answer, keep_alive, request))
        return False

    def _head(self, status: int, headers: list, keep_alive: bool) -> bytearray:
        line = STATUS_LINES.get(status) or f"{status} Unknown"
        head = bytearray(f"HTTP/1.1 {line}\r\nDate: {self.server.date()}\r\n".encode())
        for name, value in headers:
            head += f"{name}: {value}\r\n".encode("latin-1")
        if not keep_alive:
            head += b"Connection: close\r\n"
        return head

    def _send(self, answer: Answer, keep_alive: bool, head_only: bool) -> None:
        if not keep_alive:
            self.last = True
        if self.lost:  # the client went away while its answer was made
            return
        status, headers, body = answer
        head = self._head(status, headers, keep_alive)
        parts = body if isinstance(body, list) else [body] if isinstance(body, bytes) else []
        size = sum(map(len, parts))
        if not any(name.lower() == "content-length" for name, _ in headers):
            head += f"Content-Length: {size}\r\n".encode()
        head += b"\r\n"
        if head_only or not size:
            self.transport.write(head)
        elif size >= LARGE or len(parts) > 1:
            self.transport.writelines((head, *parts))
        else:
            head += parts[0]
            self.transport.write(head)

    async def _stream(self, answer: Answer, keep_alive: bool, request: _Request) -> None:
        """An answer of unknown length (a job's answers, read from the queue's store): chunked,
        written as it is read, at the pace the client reads it."""
        status, headers, chunks = answer
        chunked = request.environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        keep_alive = keep_alive and chunked  # an HTTP/1.0 client reads to the connection's end
        if not keep_alive:
            self.last = True
        head = self._head(status, headers, keep_alive)
        head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"\r\n"
        if not self.lost:
            self.transport.write(head)
        try:
            for chunk in _iterate(chunks):
                if self.lost:
                    break
                if chunk:
                    self.transport.writelines(
                        (b"%x\r\n" % len(chunk), chunk, b"\r\n") if chunked else (chunk,))
                if self.writable is not None:
                    await self.writable
            if chunked and not self.lost:
                self.transport.write(b"0\r\n\r\n")
        except Exception:  # the store failed midway: the answer ends unfinished, as it is
            log.exception("a streamed answer failed midway; its connection is closed")
            self.last = True
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self.answering = False
        self._answer_waiting()

    # deadlines and failures

    def _expect_head(self) -> None:
        self.deadline = self.loop.time() + self.server.settings.read_timeout

    def expire(self, now: float) -> None:
        """Called by the server's sweep: a deadline past is a head or a body too late."""
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        request = self.request
        if self.lingering:
            self.close()
        elif request is not None and not request.head:
            self._ended_early(request, BodyTimeout)  # the guard answers 408
        elif not self.answering:  # idle past the deadline, or a head that stalled: closed
            self.close()

    def _linger(self) -> None:
        # Closing while bytes the client sent are unread resets the connection, and the client
        # can lose the answer sent before it (a 413 for a body it is still sending). So the
        # sending half is closed, and what still comes is read and dropped until the client
        # closes, for at most LINGER seconds.
        if self.lingering:
            return
        self.closing = self.lingering = True
        self.deadline = self.loop.time() + LINGER
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        self.transport.write_eof()

    def _fail(self, status: int, message: str) -> None:
        self.request = None
        self.closing = True
        self._queue(error(status, message))


def _stopped() -> Answer:
    # gunicorn's watchdog stopped this worker while the request ran (past MODELFLY_TIMEOUT):
    # it is answered, the worker's other requests finish and the worker ends.
    return error(500, "internal error: the request ran past the server's timeout and was "
                      "stopped")


def _iterate(chunks: Any) -> Iterator[bytes]:
    yield from chunks


class _NoBody:
    """The input of a request whose body did not arrive: reading it raises why, which the
    guard answers (408, 400)."""

    def __init__(self, why: type[Exception]) -> None:
        self.why = why

    def read(self, size: int = -1) -> bytes:
        raise self.why

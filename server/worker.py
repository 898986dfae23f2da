"""gunicorn's worker process, answering HTTP with granian's Rust server.

gunicorn stays the process manager: the preloading master (the model shared by the workers),
the watchdog that replaces a worker silent for MODELFLY_TIMEOUT, graceful shutdown and the
replacement of dead workers. Inside each worker, granian's HTTP/1.1 server (Rust) parses
requests, keeps connections alive and writes answers; it hands each request to the worker's
asyncio loop (uvloop), which reads the body without holding anyone up, under
MODELFLY_READ_TIMEOUT, then runs the WSGI app in a greenlet on the loop (greenlets.py), where the
batcher can wait for other requests. One thread runs Python, as in the gevent worker this
replaced, but HTTP is handled in Rust: iris, one row, concurrency 16, three interleaved pairs,
server CPU per request 292-306 -> 239-259 µs, p99 7.8-11.1 -> 4.9-6.1 ms (bench/RESULTS.md).

granian is run through its worker classes (`granian._granian`, `granian._futures`), not its
own process manager, which has no preloading and no watchdog: these are internal, so granian
is pinned in requirements.txt.
"""

import asyncio
import contextlib
import io
import os
import sys
from typing import Any
from urllib.parse import unquote

import uvloop
from granian._futures import _future_watcher_wrapper, _new_cbscheduler
from granian._granian import RSGIWorker, SocketHolder, WorkerSignal
from granian.http import HTTP1Settings
from granian.rsgi import ProtocolClosed as RSGIProtocolClosed
from gunicorn.workers.base import Worker

from server import greenlets
from server.guard import BodyCutShort, BodyTimeout, call_wsgi, error
from server.settings import ServerSettings

# The HTTP server's own threads; Python code runs on the loop's thread only.
RUST_THREADS = 1
# Every worker's Rust thread accepts connections as fast as they come, however busy its
# Python thread is: a client's pool opened at once all landed on one worker (measured: 16 of
# 16, 4,100 instead of ~7,000 requests/s), and kept connections stay where they are. So every
# CLOSE_EVERY-th answer of a worker closes its connection (`Connection: close`); the client
# reconnects and either worker may accept, which spreads the connections within a second.
CLOSE_EVERY = 100
# A stopping worker (SIGTERM, and the old workers of a `kill -HUP`) first drains: every answer
# closes its connection, so its clients reconnect to the other workers, until no request has
# come for DRAIN_QUIET seconds (at most DRAIN_MAX). Stopping at once closed kept connections a
# client was already sending on: 3-5 of 4,000 requests failed during a reload (test_reload.py).
DRAIN_QUIET, DRAIN_MAX = 0.2, 2.0


class GranianWorker(Worker):
    """A gunicorn worker whose connections are granian's and whose app runs on asyncio."""

    def run(self) -> None:
        self.settings = ServerSettings.from_env()
        self.answered = 0
        self.draining = False
        self.last_answer = 0.0
        self.base_environ = {
            "SCRIPT_NAME": "", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
        self.loop = loop = uvloop.new_event_loop()  # the cheaper hand-over between threads
        asyncio.set_event_loop(loop)
        self.exiting = asyncio.Event()
        stop, stopped = WorkerSignal(), asyncio.Event()
        stop.add_cb(lambda: loop.call_soon_threadsafe(stopped.set))
        listener = SocketHolder(self.sockets[0].fileno(), False, self.cfg.backlog)
        http1 = HTTP1Settings(header_read_timeout=int(self.settings.read_timeout * 1000))
        server = RSGIWorker(
            worker_id=self.age, sock=(None, listener), ipc=None, threads=RUST_THREADS,
            blocking_threads=RUST_THREADS, py_threads=1, py_threads_idle_timeout=30,
            backpressure=self.cfg.worker_connections, http_mode="1", http1_opts=http1,
            http2_opts=None, websockets_enabled=False, static_files=None, metrics=(None, None))
        server.serve_mtr(_new_cbscheduler(loop, _future_watcher_wrapper(self.handle),
                                          impl_asyncio=True), loop, stop)
        loop.run_until_complete(self._heartbeat(stop, stopped))

    async def _heartbeat(self, stop: Any, stopped: asyncio.Event) -> None:
        # A request that keeps the loop busy keeps this from running: gunicorn's master then
        # stops the worker after MODELFLY_TIMEOUT and starts another.
        while self.alive and self.ppid == os.getppid():
            self.notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exiting.wait(), 1)
        self.draining = True
        drained = self.loop.time() + DRAIN_MAX
        while (self.loop.time() - self.last_answer < DRAIN_QUIET
               and self.loop.time() < drained):
            await asyncio.sleep(DRAIN_QUIET / 4)
        stop.set()  # no new connections; answers in progress are finished
        await stopped.wait()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: gunicorn's graceful stop, begun now rather than at the next heartbeat."""
        super().handle_exit(sig, frame)
        if hasattr(self, "exiting"):
            self.loop.call_soon_threadsafe(self.exiting.set)

    async def handle(self, scope: Any, proto: Any) -> None:
        """One request: read its body, run the app, send its answer."""
        environ = self.environ(scope)
        body = await self.read_body(proto, environ)
        environ["wsgi.input"] = io.BytesIO(body) if isinstance(body, bytes) else _NoBody(body)
        try:
            status, headers, payload = await greenlets.run(call_wsgi, self.wsgi, environ)
        except SystemExit:
            # gunicorn's watchdog stopped this worker while the request ran (past
            # MODELFLY_TIMEOUT): it is answered, the worker's other requests finish and
            # the worker ends (its heartbeat sees it no longer alive).
            status, headers, payload = error(500, "internal error: the request ran past the "
                                                  "server's timeout and was stopped")
        self.answered += 1
        self.last_answer = self.loop.time()
        if self.draining or self.answered % CLOSE_EVERY == 0:
            headers = [*headers, ("Connection", "close")]
        if isinstance(payload, bytes):
            proto.response_bytes(status, headers, payload)
            return
        transport = proto.response_stream(status, headers)
        try:
            for chunk in payload:  # a job's answers, read from the queue's store chunk by chunk
                await transport.send_bytes(chunk)
        finally:
            if hasattr(payload, "close"):
                payload.close()

    def environ(self, scope: Any) -> dict:
        """The WSGI environ of an RSGI request scope, without its body."""
        host, _, port = scope.server.rpartition(":")
        path = scope.path
        environ = {
            **self.base_environ, "REQUEST_METHOD": scope.method,
            "PATH_INFO": unquote(path, "latin-1") if "%" in path else path,
            "QUERY_STRING": scope.query_string, "SERVER_NAME": host, "SERVER_PORT": port,
            "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": scope.client.rpartition(":")[0], "wsgi.url_scheme": scope.scheme}
        for name, value in scope.headers.items():
            if "_" in name:  # X_Token would pass as X-Token: dropped, as gunicorn does
                continue
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    async def read_body(self, proto: Any, environ: dict) -> bytes | type[Exception]:
        """The body, or why there is none: BodyTimeout (not all of it arrived within the read
        timeout) or BodyCutShort. A body over the limit is not read (declared) or read only
        past the limit (chunked): the guard refuses it with a 413."""
        declared = environ.get("CONTENT_LENGTH", "")
        limit, _ = self.settings.body_limit(environ)
        if not declared and "HTTP_TRANSFER_ENCODING" not in environ:
            return b""
        if declared.isdigit() and int(declared) > limit:
            return b""
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                if declared:
                    # awaited whole: in chunks it cost ~45 µs more a request (two hand-overs)
                    return await proto()
                chunks, size = [], 0
                async for chunk in proto:
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        break
                return b"".join(chunks)
        except TimeoutError:
            return BodyTimeout
        except RSGIProtocolClosed:  # the client stopped sending before its Content-Length
            return BodyCutShort


class _NoBody:
    """The input of a request whose body did not arrive: reading it raises why, which the
    guard answers (408, 400)."""

    def __init__(self, why: type[Exception]) -> None:
        self.why = why

    def read(self, size: int = -1) -> bytes:
        raise self.why

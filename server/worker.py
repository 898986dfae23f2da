"""gunicorn's worker process, answering HTTP on its own asyncio loop (server/http.py).

gunicorn stays the process manager: the preloading master (the model shared by the workers),
the watchdog that replaces a worker silent for MODELFLY_TIMEOUT, graceful shutdown and the
replacement of dead workers. Inside each worker, one thread runs an event loop (uvloop) that
accepts connections, parses them (httptools) and runs the WSGI app in greenlets, where the
batcher can wait for other requests.
"""

import asyncio
import contextlib
import os
import sys
from typing import Any

import uvloop
from gunicorn.workers.base import Worker

from server.http import HttpServer
from server.settings import ServerSettings

# A client's pool opened at once can land on one worker (measured with the Rust server used
# before: 16 of 16 connections, 4,100 instead of ~7,000 requests/s), and kept connections stay
# where they are (after a worker is replaced, say). A worker with connections accepts late
# (http.py, ACCEPT_WHEN_BUSY), and every CLOSE_EVERY-th answer of a worker closes its
# connection (`Connection: close`): the client reconnects, and a worker with fewer connections
# is the likelier to take it. Every 100th answer, each reconnect 2 ms late, was 1 % of the
# requests and moved the p99.
CLOSE_EVERY = 500
# A stopping worker (SIGTERM, and the old workers of a `kill -HUP`) first drains: every answer
# closes its connection, so its clients reconnect to the other workers, until no request has
# come for DRAIN_QUIET seconds (at most DRAIN_MAX). Stopping at once closed kept connections a
# client was already sending on: 3-5 of 4,000 requests failed during a reload (test_reload.py).
DRAIN_QUIET, DRAIN_MAX = 0.2, 2.0
# Then, no longer listening, it gives a connection that has not begun a request this long to
# begin one: its client connected to send it, and closing the connection fails that request
# (1 of 4,000 during a reload, on a connection accepted just before the worker stopped).
FIRST_REQUEST_WAIT = 2.0


class LoopWorker(Worker):
    """A gunicorn worker whose connections and app share one asyncio loop."""

    def run(self) -> None:
        base_environ = {
            "SCRIPT_NAME": "", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
            "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "wsgi.url_scheme": "http"}
        self.http = HttpServer(self.wsgi, ServerSettings.from_env(), base_environ,
                               self.cfg.worker_connections, CLOSE_EVERY)
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.exiting = asyncio.Event()
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        for listener in self.sockets:
            self.http.listen(listener.sock, share=self.cfg.workers > 1)
        self.http.watch()
        # A request that keeps the loop busy keeps this from running: gunicorn's master then
        # stops the worker after MODELFLY_TIMEOUT and starts another.
        while self.alive and self.ppid == os.getppid():
            self.notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exiting.wait(), 1)
        self.http.draining = True
        drained = self.loop.time() + DRAIN_MAX
        while (self.loop.time() - self.http.last_answer < DRAIN_QUIET
               and self.loop.time() < drained):
            await asyncio.sleep(DRAIN_QUIET / 4)
        self.http.stop_listening()  # no new connections; answers in progress are finished
        unused_until = self.loop.time() + FIRST_REQUEST_WAIT
        while True:
            self.http.close_idle(spare_unused=self.loop.time() < unused_until)
            if not self.http.busy():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)  # the access lines and metrics of the last turn are written

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: gunicorn's graceful stop, begun now rather than at the next heartbeat."""
        super().handle_exit(sig, frame)
        if hasattr(self, "exiting"):
            self.loop.call_soon_threadsafe(self.exiting.set)

"""Adaptive micro-batching: concurrent predictions for one model, in one worker, share one
model call.

In the production server's workers (worker.py) each request runs in a greenlet on the
worker's event loop (greenlets.py). The first request to arrive leads: it lets the loop go round
until no more requests join (every request already received joins in), takes all waiting
requests up to `max_rows`, and answers them with one call of the estimator; each caller gets
back its own rows. Requests that arrive while the model runs queue up and form the next batch.

Loop turns are only taken for models whose call is dear (WAIT_FOR_CALLS_OVER), or when a wait
is configured (MODELFLY_BATCH_WAIT_MS): a batch saves model calls, and for a cheap one (iris'
LogisticRegression, ~15 µs) the turns and the hand-over cost more than the calls they save
(measured with gevent's loop: 40 % fewer requests per second at concurrency 16, p50 +10 % at
concurrency 1), while for a Pipeline (~5 ms a call) batching gave 4x the requests per second.
A cheap model with nobody queued is called at once, without the queue and the hand-over.
`Batching` is what the server plugs into the core's registry as its answerer: outside such a
greenlet (the Firefly CLI, a test calling predict) there is nothing to coalesce and the model
is called directly. Inside, a batch's arrays are split between its callers and each answer's
per-row lists are written as JSON from them (written.py).
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy

from modelfly.features import Rows
from modelfly.model import LoadedModel
from server import greenlets
from server.written import written_answer

# Model calls at least this long (moving average) are worth a loop turn to gather a batch.
WAIT_FOR_CALLS_OVER = 0.0002
# Loop turns a request received needs to reach the queue; see Batcher._lead.
TURNS_TO_JOIN = 3


class _Waiting:
    __slots__ = ("rows", "answer", "error", "woken")

    def __init__(self, rows: Rows) -> None:
        self.rows, self.answer, self.error = rows, None, None
        self.woken: asyncio.Future | None = None

    def sleep(self) -> None:
        """Wait on the event loop until wake() is called."""
        self.woken = asyncio.get_running_loop().create_future()
        greenlets.wait(self.woken)

    def wake(self) -> None:
        if self.woken is not None and not self.woken.done():
            self.woken.set_result(None)


class Batching:
    """The registry's answerer in the production server (Registry.answerer): in a request's
    greenlet, through the model's own Batcher (unless max_rows is 1: no batch could hold two
    requests), the answer's lists written as JSON (orjson.Fragment, which the server's orjson
    writes as they are); outside, the model's own answer."""

    def __init__(self, max_rows: int, max_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.max_rows, self.max_wait, self.on_batch = max_rows, max_wait, on_batch
        self.batchers: dict[LoadedModel, Batcher] = {}

    def __call__(self, model: LoadedModel, rows: Rows) -> dict:
        if not greenlets.inside():
            return model.answer(rows)
        if self.max_rows <= 1:
            arrays = _Arrays(model).answer(rows)
        else:
            batcher = self.batchers.get(model)
            if batcher is None:
                batcher = self.batchers[model] = Batcher(_Arrays(model), self.max_rows,
                                                         self.max_wait, self.on_batch)
            arrays = batcher.answer(rows)
        return written_answer(model, arrays["predictions"], arrays["probabilities"],
                              arrays["codes"])


class _Arrays:
    """A model's answers as its arrays (predictions, probabilities, codes), for a batcher to
    split."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def answer(self, rows: Rows) -> dict:
        predictions, probabilities, codes = self.model.coded_arrays(rows)
        return {"predictions": predictions, "probabilities": probabilities, "codes": codes}


class Batcher:
    """Coalesces `answer` calls for one model, between the greenlets of one event loop."""

    def __init__(self, model: Any, max_rows: int, max_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        """model: anything with answer(rows), a dict whose lists and arrays hold a value per
        row (each caller gets its rows' part of them); max_wait: seconds the leader
        waits for more; on_batch: told how many requests each model call answered."""
        self.model, self.max_rows, self.max_wait = model, max_rows, max_wait
        self.on_batch = on_batch
        self.queue: list[_Waiting] = []
        self.call_seconds = WAIT_FOR_CALLS_OVER  # a moving average; dear until measured

    def answer(self, rows: Rows) -> dict:
        if not self.queue and not self._gathers():
            # Nobody waits, and a cheap model is called without a loop turn, so nobody could
            # join: a batch of one, without the hand-over.
            waiting = _Waiting(rows)
            self._run([waiting])
        else:
            waiting = self._join(rows)
        if waiting.error is not None:
            raise waiting.error
        return waiting.answer

    def _join(self, rows: Rows) -> _Waiting:
        """Queue the rows and wait until a batch holding them has run."""
        waiting = _Waiting(rows)
        self.queue.append(waiting)
        try:
            if len(self.queue) == 1:
                self._lead()
            while waiting.answer is None and waiting.error is None:
                waiting.sleep()
                if (waiting.answer is None and waiting.error is None
                        and self.queue[:1] == [waiting]):
                    self._lead()  # the previous batch was full: this one leads the next
        except BaseException:
            # Cancelled while waiting (its task): out of the queue, and if it was next to
            # lead, the one after it leads instead, so that nobody waits for it.
            if waiting in self.queue:
                self.queue.remove(waiting)
                if self.queue:
                    self.queue[0].wake()
            raise
        return waiting

    def _lead(self) -> None:
        try:
            if self._gathers():
                # A request received takes a few loop turns (its task starts, its body is
                # read) to reach the queue: go round until a turn brings nobody new.
                queued = 0
                while len(self.queue) > queued:
                    queued = len(self.queue)
                    for _ in range(TURNS_TO_JOIN):
                        greenlets.wait(asyncio.sleep(0))
                if self.max_wait > 0:
                    greenlets.wait(asyncio.sleep(self.max_wait))
        finally:  # a leader cancelled while gathering still answers the others
            self._answer_batch()

    def _answer_batch(self) -> None:
        batch, taken = [], 0
        while self.queue and (not batch or taken + len(self.queue[0].rows) <= self.max_rows):
            batch.append(self.queue.pop(0))
            taken += len(batch[-1].rows)
        try:
            self._run(batch)
        finally:
            for waiting in batch:
                waiting.wake()
            if self.queue:  # more came while the model ran: wake the next leader
                self.queue[0].wake()

    def _gathers(self) -> bool:
        """Whether a leader lets the loop go round for others to join its batch."""
        return self.max_wait > 0 or self.call_seconds >= WAIT_FOR_CALLS_OVER

    def _run(self, batch: list[_Waiting]) -> None:
        if self.on_batch:
            self.on_batch(len(batch))
        try:
            started = time.perf_counter()
            together = self.model.answer(joined([waiting.rows for waiting in batch]))
            # A call the OS paused (the cores are shared) counts as at most 4x the average:
            # one such pause must not make a cheap model gather for the calls after it.
            took = min(time.perf_counter() - started, 4 * self.call_seconds)
            self.call_seconds += 0.2 * (took - self.call_seconds)
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            # The shared call failed: answer each alone, so a failure stays its own.
            for waiting in batch:
                try:
                    waiting.answer = self.model.answer(waiting.rows)
                except Exception as own_error:
                    waiting.error = own_error
            return
        if len(batch) == 1:
            batch[0].answer = together
            return
        start = 0
        for waiting in batch:
            end = start + len(waiting.rows)
            waiting.answer = {key: value[start:end] if isinstance(value, (list, numpy.ndarray))
                              else value for key, value in together.items()}
            start = end


def joined(parts: list[Rows]) -> Rows:
    """The rows of several requests as one model input, in order."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, numpy.ndarray) for part in parts):
        return numpy.concatenate(parts)
    return [row for part in parts
            for row in (part.tolist() if isinstance(part, numpy.ndarray) else part)]

"""Jobs: a large batch predicted in the background by `python -m modelfly worker`, chunk by
chunk, its progress written after each chunk, its answers kept MODELFLY_JOB_TTL seconds.

A job lives in the queue's key-value store (queue.py), so that any server replica and any
worker can read it: `job:<id>` is its state, `job:<id>:in:<k>` and `job:<id>:out:<k>` its k-th
chunk of rows and of answers (the predictions as JSON, the probabilities as one float array),
`job:<id>:end` how it ended, written once (put_if_empty, atomic on both backends), so that a
job cancelled as it succeeds is one or the other, and no progress write undoes a cancellation.
Values are JSON or .npy, never pickles.

huey loses a task whose worker dies mid-way. So a watch task, scheduled for each job, puts a
running job that has written no progress for MODELFLY_JOB_STALE_SECONDS back on the queue,
under a new attempt number, which stops the old attempt at its next chunk if it was only slow
(a chunk predicted twice gives the same answers).
"""

import io
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy
import orjson
from huey import Huey
from huey.constants import EmptyData

from modelfly.csv_input import read_csv
from modelfly.errors import BadInput, JobNotFinished, JobNotFound, ModelflyError
from modelfly.features import Rows, to_rows
from modelfly.model import LoadedModel
from modelfly.queue import make_huey
from modelfly.registry import Registry
from modelfly.settings import JobSettings

log = logging.getLogger("modelfly")

Chunk = tuple[list, numpy.ndarray | None]  # a chunk's predictions, and its probabilities
JOB_ID = re.compile(r"[0-9a-f]{32}")  # 128 random bits
FINISHED = ("succeeded", "failed", "cancelled")
PUBLIC = ("job_id", "status", "model", "version", "rows", "rows_done", "created_at",
          "started_at", "finished_at", "error")
NO_SUCH_JOB = ("no such job (a job and its answers are kept MODELFLY_JOB_TTL seconds, then "
               "deleted)")


class Jobs:
    """Submit, read and cancel jobs (the server's side); run and watch them (the worker's).

    `stopping()` is polled between chunks: the worker sets it to its consumer's stop flag, so
    that on SIGTERM a job is handed back to the queue after the chunk in hand.
    """

    def __init__(self, settings: JobSettings, models: Registry, huey: Huey | None = None) -> None:
        self.settings, self.models = settings, models
        self.huey = huey or make_huey(settings)
        self.stopping: Callable[[], bool] = lambda: False
        self._run = self.huey.task(name="modelfly.run_job")(self.run)
        self._watch = self.huey.task(name="modelfly.watch_job")(self.watch)
        self._expire = self.huey.task(name="modelfly.expire_job")(self.expire)

    # --- the server's side

    def submit(self, features: Any, model: Any = None, version: Any = None) -> dict:
        """A job for `features` (any shape /predict takes), checked as /predict checks them."""
        loaded = self.models.get(model, version)
        return self._start(loaded, to_rows(features, loaded.card, self.settings.max_rows,
                                           self.models.settings.max_text_chars))

    def submit_csv(self, data: bytes, model: Any = None, version: Any = None) -> dict:
        """A job for the rows of a CSV body with a header row."""
        loaded = self.models.get(model, version)
        return self._start(loaded, read_csv(data, loaded.card, self.settings.max_rows,
                                            self.models.settings.max_text_chars))

    def status(self, job_id: Any) -> dict:
        return public(self._state(job_id))

    def counts(self) -> dict:
        """The queue's totals, the same from every server: jobs submitted, queued now,
        finished by status, rows predicted."""
        count = self.huey.storage.incr
        return {"submitted": count("jobs:submitted", 0), "queued": count("jobs:queued", 0),
                "finished": {status: count(f"jobs:finished:{status}", 0)
                             for status in FINISHED},
                "rows": count("jobs:rows", 0)}

    def answers(self, job_id: Any) -> tuple[dict, Iterator[Chunk]]:
        """A succeeded job's state and its answers, chunk by chunk: (predictions, probabilities
        with a column per class of state["classes"], or None)."""
        state = self._state(job_id)
        if state["status"] != "succeeded":
            raise JobNotFinished(f"the job is {state['status']}; its answers can be fetched "
                                 "once it has succeeded")

        def chunks() -> Iterator[Chunk]:
            for k in range(state["chunks"]):
                raw = self.huey.storage.peek_data(f"job:{state['job_id']}:out:{k}")
                if raw is EmptyData:  # deleted or expired while being read
                    raise JobNotFound(NO_SUCH_JOB)
                yield _decode_answer(raw)

        return state, chunks()

    def cancel(self, job_id: Any) -> dict:
        """Cancel the job (a running one stops at its next chunk) and delete its rows and
        answers; a finished job is deleted whole."""
        state = self._state(job_id)
        if state["status"] in FINISHED or not self._end(state["job_id"], "cancelled"):
            self.expire(state["job_id"])  # it had ended already
            return {**public(state), "deleted": True}
        self._moved(state, "cancelled")
        self._drop_data(state)
        return {**public(state), "status": "cancelled"}

    # --- the worker's side

    def run(self, job_id: str, attempt: int) -> None:
        """Predict the job's chunks from the first not done, writing progress after each."""
        state = self._read(job_id)
        if state is None or state["status"] in FINISHED or state["attempt"] != attempt \
                or self._cancelled(job_id):
            return
        self._moved(state, "running")
        state.update(started_at=state["started_at"] or time.time(),
                     heartbeat_at=time.time())
        self._write(state)
        try:
            loaded = self.models.get(state["model"], state["version"])
        except ModelflyError as refusal:
            return self._finish(state, "failed", str(refusal))
        size = state["chunk_rows"]
        for k in range(state["rows_done"] // size, state["chunks"]):
            if self._cancelled(job_id):
                return self._drop_data(state)
            if self.stopping():
                self._moved(state, "queued")
                self._write(state)
                self._run(job_id, attempt)
                log.info("job %s handed back to the queue after %d rows", job_id,
                         state["rows_done"])
                return
            answer = self._predict(loaded, state, k)
            if isinstance(answer, str):
                return self._finish(state, "failed", answer)
            self.huey.storage.put_data(f"job:{job_id}:out:{k}", _encode_answer(*answer))
            current = self._read(job_id)
            if current is None or current["attempt"] != attempt:  # superseded, or deleted
                return
            done = min(state["rows"], (k + 1) * size)
            self.huey.storage.incr("jobs:rows", done - state["rows_done"])
            state.update(rows_done=done, heartbeat_at=time.time())
            self._write(state)
        if self._cancelled(job_id):
            return self._drop_data(state)
        self._finish(state, "succeeded")

    def watch(self, job_id: str) -> None:
        """Put the job back on the queue if it is running but silent; then watch again."""
        state = self._read(job_id)
        if state is None or state["status"] in FINISHED or self._cancelled(job_id):
            return
        silent = time.time() - state["heartbeat_at"]
        if state["status"] == "running" and silent > self.settings.stale_seconds:
            self._moved(state, "queued")
            state["attempt"] += 1
            self._write(state)
            log.warning("job %s: no progress for %.0f s; put back on the queue (attempt %d)",
                        job_id, silent, state["attempt"])
            self._run(job_id, state["attempt"])
        self._watch.schedule((job_id,), delay=self.settings.stale_seconds)

    def expire(self, job_id: str) -> None:
        """Delete the job whole: its state, rows, answers and cancellation."""
        raw = self.huey.storage.peek_data(f"job:{job_id}")
        if raw is not EmptyData:
            state = orjson.loads(raw)
            if state["status"] == "queued" and not self._cancelled(job_id):
                self._moved(state, "expired")
            self._drop_data(state)
            for entry in range(state.get("queued", 0) + 1):
                self.huey.storage.delete_data(f"job:{job_id}:left:{entry}")
        for key in (f"job:{job_id}", f"job:{job_id}:end"):
            self.huey.storage.delete_data(key)

    # --- the parts

    def _start(self, loaded: LoadedModel, rows: Rows) -> dict:
        job_id, size, now = secrets.token_hex(16), self.settings.chunk_rows, time.time()
        chunks = -(-len(rows) // size)
        for k in range(chunks):
            self.huey.storage.put_data(f"job:{job_id}:in:{k}",
                                       _encode_rows(rows[k * size:(k + 1) * size]))
        state = {"job_id": job_id, "status": "queued", "model": loaded.card["name"],
                 "version": loaded.card["version"], "classes": loaded.classes,
                 "rows": len(rows), "rows_done": 0,
                 "created_at": now, "started_at": None, "finished_at": None, "error": None,
                 "chunks": chunks, "chunk_rows": size, "attempt": 0, "queued": 0,
                 "heartbeat_at": now,
                 "expires_at": now + self.settings.ttl}
        self._write(state)
        self.huey.storage.incr("jobs:submitted", 1)
        self.huey.storage.incr("jobs:queued", 1)
        self._run(job_id, 0)
        self._watch.schedule((job_id,), delay=self.settings.stale_seconds)
        self._expire.schedule((job_id,), delay=self.settings.ttl)
        log.info("job %s submitted: %d rows for %s %s", job_id, len(rows), state["model"],
                 state["version"])
        return public(state)

    def _predict(self, loaded: LoadedModel, state: dict, k: int) -> Chunk | str:
        """Chunk k's answer, or the job's error: what /predict would say, with the row. The
        model is called directly: a chunk is a batch already."""
        raw = self.huey.storage.peek_data(f"job:{state['job_id']}:in:{k}")
        if raw is EmptyData:
            return "the job's rows are gone (deleted or expired)"
        try:
            answer = loaded.arrays(_decode_rows(raw))
        except BadInput as refusal:
            first = k * state["chunk_rows"]
            return re.sub(r"^row (\d+)", lambda found: f"row {first + int(found[1])}",
                          str(refusal))
        except Exception:
            log.exception("job %s: model %r failed on chunk %d", state["job_id"],
                          state["model"], k)
            return f"model {state['model']!r} failed to predict; the details are in the log"
        return answer[0].tolist(), answer[1]

    def _finish(self, state: dict, status: str, error: str | None = None) -> None:
        if not self._end(state["job_id"], status):  # cancelled meanwhile
            return self._drop_data(state)
        self._moved(state, status)
        state.update(error=error, finished_at=time.time())
        self._write(state)
        for k in range(state["chunks"]):  # the rows are done with
            self.huey.storage.delete_data(f"job:{state['job_id']}:in:{k}")
        if status != "succeeded":
            self._drop_data(state)
        log.info("job %s %s after %d of %d rows%s", state["job_id"], status,
                 state["rows_done"], state["rows"], f": {error}" if error else "")

    def _moved(self, state: dict, new: str) -> None:
        """Move the job from its status to `new` (in `state`; the caller writes it), keeping
        the queue's counters. Leaving the queue is counted once however many take the job out
        of it at once (a cancel and the worker starting it): the first to mark that entry of
        the job into the queue (its number, state["queued"]) as left."""
        if state["status"] == new:
            return
        storage = self.huey.storage
        if state["status"] == "queued" and storage.put_if_empty(
                f"job:{state['job_id']}:left:{state.get('queued', 0)}", b"1"):
            storage.incr("jobs:queued", -1)
        if new == "queued":
            state["queued"] = state.get("queued", 0) + 1
            storage.incr("jobs:queued", 1)
        if new in FINISHED:
            storage.incr(f"jobs:finished:{new}", 1)
        state["status"] = new

    def _drop_data(self, state: dict) -> None:
        for k in range(state["chunks"]):
            for part in ("in", "out"):
                self.huey.storage.delete_data(f"job:{state['job_id']}:{part}:{k}")

    def _state(self, job_id: Any) -> dict:
        state = self._read(job_id) if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) \
            else None
        if state is None:
            raise JobNotFound(NO_SUCH_JOB)
        if state["status"] not in FINISHED and self._cancelled(job_id):
            state["status"] = "cancelled"
        return state

    def _read(self, job_id: str) -> dict | None:
        raw = self.huey.storage.peek_data(f"job:{job_id}")
        if raw is EmptyData:
            return None
        state = orjson.loads(raw)
        if time.time() >= state["expires_at"]:
            self.expire(job_id)
            return None
        return state

    def _write(self, state: dict) -> None:
        self.huey.storage.put_data(f"job:{state['job_id']}", orjson.dumps(state))

    def _cancelled(self, job_id: str) -> bool:
        return self.huey.storage.peek_data(f"job:{job_id}:end") == b"cancelled"

    def _end(self, job_id: str, status: str) -> bool:
        """Whether the job ends as `status`: false if it had ended otherwise already."""
        return self.huey.storage.put_if_empty(f"job:{job_id}:end", status.encode())


def public(state: dict) -> dict:
    """What callers see of a job: its status and progress, times in ISO 8601 UTC."""
    shown = {key: state[key] for key in PUBLIC}
    for key in ("created_at", "started_at", "finished_at"):
        if shown[key] is not None:
            shown[key] = datetime.fromtimestamp(shown[key], UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
    return shown


def _npy(values: numpy.ndarray) -> bytes:
    out = io.BytesIO()
    numpy.save(out, values, allow_pickle=False)
    return out.getvalue()


def _encode_rows(rows: Rows) -> bytes:
    return b"N" + _npy(rows) if isinstance(rows, numpy.ndarray) else b"J" + orjson.dumps(rows)


def _decode_rows(raw: bytes) -> Rows:
    if raw[:1] == b"N":
        return numpy.load(io.BytesIO(raw[1:]), allow_pickle=False)
    return orjson.loads(raw[1:])


def _encode_answer(predictions: list, probabilities: numpy.ndarray | None) -> bytes:
    """The predictions' JSON, its length first, then the probabilities' .npy if any."""
    labels = orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY)
    tail = b"" if probabilities is None else _npy(probabilities)
    return len(labels).to_bytes(8, "big") + labels + tail


def _decode_answer(raw: bytes) -> Chunk:
    size = int.from_bytes(raw[:8], "big")
    tail = raw[8 + size:]
    return (orjson.loads(raw[8:8 + size]),
            numpy.load(io.BytesIO(tail), allow_pickle=False) if tail else None)

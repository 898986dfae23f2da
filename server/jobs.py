"""The /jobs routes, over modelfly/jobs.py; the guard checks the token and reads the body.

    POST /jobs                  a predict body (JSON), or a CSV with a header row
                                (Content-Type: text/csv; model and version in the query)
                                -> 202 {"job_id", "status", "status_url", "result_url"}
    GET /jobs/<id>              its status and progress
    GET /jobs/<id>/result       its answers as /predict gives them, or as CSV (Accept:
                                text/csv, the columns of `python -m client predict --output
                                csv`); streamed; 409 until the job has succeeded
    DELETE /jobs/<id>           cancel it and delete its data
"""

import csv
import io
import json
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import orjson

from modelfly.errors import ModelflyError
from modelfly.jobs import Chunk, Jobs
from modelfly.model import per_row
from server.answers import Answer, error, json_answer

JOB_KEYS = ("features", "model", "version")
ALLOWED = {"/jobs": ("POST",), "/jobs/{id}": ("GET", "DELETE"), "/jobs/{id}/result": ("GET",)}


def route(path: str) -> str | None:
    """The metrics' route label of a /jobs path, whatever the id."""
    if path == "/jobs":
        return path
    if path.startswith("/jobs/"):
        return "/jobs/{id}/result" if path.endswith("/result") else "/jobs/{id}"
    return None


class JobRoutes:
    """The routes over the jobs `make_jobs()` gives, made on first use: in each worker process
    (after gunicorn's fork), and only by a server that is sent jobs."""

    def __init__(self, make_jobs: Callable[[], Jobs]) -> None:
        self.make_jobs = make_jobs
        self._jobs: Jobs | None = None

    @property
    def jobs(self) -> Jobs:
        if self._jobs is None:
            self._jobs = self.make_jobs()
        return self._jobs

    def counts(self) -> dict:
        return self.jobs.counts()

    def answer(self, environ: dict, path: str, method: str, body: bytes) -> Answer:
        """The answer to a /jobs request whose body (for POST) has been read."""
        label = route(path)
        allowed = ALLOWED[label]
        if method not in allowed:
            return error(405, f"{label} takes {', '.join(allowed)}, received {method[:10]}",
                         ("Allow", ", ".join(allowed)))
        try:
            if label == "/jobs":
                return self._submit(environ, body)
            job_id = path.split("/")[2]
            if label == "/jobs/{id}/result":
                return self._result(environ, job_id)
            if method == "DELETE":
                return json_answer(200, self.jobs.cancel(job_id))
            return json_answer(200, self.jobs.status(job_id))
        except ModelflyError as refusal:
            return error(refusal.status, refusal.message)

    def _submit(self, environ: dict, body: bytes) -> Answer:
        content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type == "text/csv":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            unknown = sorted(set(query) - {"model", "version"})
            if unknown:
                return error(400, f"unknown query parameter(s) {', '.join(unknown)[:80]}; a "
                                  "CSV job takes model and version")
            job = self.jobs.submit_csv(body, *(query.get(key, [None])[-1]
                                               for key in ("model", "version")))
        elif content_type == "application/json":
            if environ.get("QUERY_STRING"):
                return error(400, "a JSON job names its model and version in the body; the "
                                  "query string is for CSV jobs")
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError as problem:
                return error(400, f"the body is not JSON: {problem}")
            if not isinstance(request, dict) or "features" not in request:
                return error(422, 'send a JSON object {"features": [...], "model": ..., '
                                  '"version": ...} as for /predict')
            unknown = sorted(set(request) - set(JOB_KEYS))
            if unknown:
                return error(422, f"unexpected argument(s) {', '.join(unknown)[:80]}; a job "
                                  "takes " + ", ".join(JOB_KEYS))
            job = self.jobs.submit(**request)
        else:
            return error(415, "send the rows as 'Content-Type: application/json' (a predict "
                              "body) or 'text/csv' (a header row, then one row per line); "
                              f"received {content_type[:60] or 'no content type'!r}")
        url = f"/jobs/{job['job_id']}"
        return json_answer(202, {"job_id": job["job_id"], "status": job["status"],
                                 "status_url": url, "result_url": url + "/result"},
                           ("Location", url))

    def _result(self, environ: dict, job_id: str) -> Answer:
        state, chunks = self.jobs.answers(job_id)
        if "text/csv" in environ.get("HTTP_ACCEPT", ""):
            return 200, [("Content-Type", "text/csv; charset=utf-8")], _csv(state, chunks)
        return 200, [("Content-Type", "application/json")], _json(state, chunks, self.jobs,
                                                                 job_id)


def _json(state: dict, chunks: Iterator[Chunk], jobs: Jobs, job_id: str) -> Iterator[bytes]:
    """/predict's answer for all the rows, written a chunk at a time: the predictions of every
    chunk, then (for a classifier) their probabilities."""
    head = json.dumps({"model": state["model"], "version": state["version"]})[:-1]
    yield f'{head}, "predictions": ['.encode()
    for k, (predictions, _) in enumerate(chunks):
        yield (b"," if k else b"") + orjson.dumps(predictions)[1:-1]
    if state["classes"]:
        yield b'], "probabilities": ['
        for k, (_, probabilities) in enumerate(jobs.answers(job_id)[1]):
            yield (b"," if k else b"") + orjson.dumps(
                per_row(state["classes"], probabilities))[1:-1]
    yield b"]}"


def _csv(state: dict, chunks: Iterator[Chunk]) -> Iterator[bytes]:
    """One line per row: the prediction, then p_<class> for each class of a classifier."""
    labels = [f"p_{label}" for label in state["classes"]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["prediction", *labels])
    yield out.getvalue().encode()
    for predictions, probabilities in chunks:
        if probabilities is None:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([p] for p in predictions)
            yield out.getvalue().encode()
            continue
        # the numbers as orjson writes them, a row a line, after the label's cell
        numbers = orjson.dumps(probabilities, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2]
        cells = {label: _cell(str(label)) for label in set(predictions)}
        lines = map(",".join, zip(map(cells.__getitem__, predictions),
                                  numbers.decode().split("],["), strict=True))
        yield ("\n".join(lines) + "\n").encode()


def _cell(value: str) -> str:
    """`value` as one CSV cell, quoted where csv would quote it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([value])
    return out.getvalue()

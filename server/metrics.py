"""Prometheus metrics of the production server, correct across gunicorn's worker processes.

With PROMETHEUS_MULTIPROC_DIR set (serve.py sets it before gunicorn starts), every process
writes its samples to files there and `/metrics` adds them up; without it, the numbers are
this process's alone.
"""

import asyncio
import bisect
import logging
import os
from collections import Counter as Tally
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("modelfly")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)


class Metrics:
    """The server's metrics; `started` and `observe_request` per request, `exposition` for
    GET /metrics.

    With worker processes, every sample is a write to a shared file under a lock, with a
    check of the process id (a system call): on an event loop, the requests counted and the
    durations observed in one turn of the loop are added at its end, each series and each
    bucket once, and the requests in flight are set then (of seven writes per request, about
    one is left at concurrency 16)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        own = None if self.multiprocess else CollectorRegistry()
        self.requests = Counter("modelfly_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=own)
        self.latency = Histogram("modelfly_http_request_duration_seconds",
                                 "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=own)
        self.in_flight = Gauge("modelfly_http_requests_in_flight", "Requests being answered",
                               multiprocess_mode="livesum", registry=own)
        self.load_seconds = Gauge("modelfly_model_load_seconds",
                                  "Seconds the last load and check of a model took",
                                  ["model", "version"],
                                  multiprocess_mode="max", registry=own)
        self.load_failures = Counter("modelfly_model_load_failures",
                                     "Models refused by their checks", ["model", "version"],
                                     registry=own)
        self.batch_requests = Histogram("modelfly_batch_requests",
                                        "Requests answered by one model call (micro-batching)",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=own)
        self._own = own
        # The labelled series each (route, method, status) writes to: labels() takes a lock
        # and checks its arguments on every call. Routes are the server's own paths or "other".
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._answered: Tally = Tally()  # per series, since the last flush
        self._observed: dict[Histogram, list[float]] = {}  # per histogram, since then
        self._in_flight = self._in_flight_set = 0
        self._flush_due = False

    def started(self) -> None:
        """A request is being answered (observe_request says when it is done)."""
        self._in_flight += 1
        self._due()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        series = self._series.get((route, method, status))
        if series is None:
            series = self._series[route, method, status] = (
                self.requests.labels(route, method, str(status)), self.latency.labels(route))
        self._in_flight -= 1
        self._answered[series[0]] += 1
        self._observe(series[1], seconds)

    def batch_answered(self, requests: int) -> None:
        """One model call answered this many requests (the micro-batcher)."""
        self._observe(self.batch_requests, requests)

    def _observe(self, histogram: Histogram, amount: float) -> None:
        observed = self._observed.get(histogram)
        if observed is None:
            self._observed[histogram] = [amount]
        else:
            observed.append(amount)
        self._due()

    def _due(self) -> None:
        if self._flush_due:
            return
        self._flush_due = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop: any other WSGI server
            self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush."""
        self._flush_due = False
        answered, self._answered = self._answered, Tally()
        for counter, count in answered.items():
            counter.inc(count)
        observed, self._observed = self._observed, {}
        for histogram, amounts in observed.items():
            observe_all(histogram, amounts)
        if self._in_flight != self._in_flight_set:
            self.in_flight.set(self._in_flight)
            self._in_flight_set = self._in_flight

    def model_loaded(self, name: str, version: str, seconds: float) -> None:
        self.load_seconds.labels(name, version).set(seconds)

    def model_refused(self, name: str, version: str, reason: str) -> None:
        self.load_failures.labels(name, version).inc()

    def exposition(self, job_counts: Callable[[], dict] | None = None) -> bytes:
        """The metrics text; with `job_counts`, the jobs' totals read from the queue too."""
        self.flush()  # this process's own counts so far, this request in flight among them
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self._own
        text = generate_latest(registry)
        if job_counts is not None:
            try:
                counts = job_counts()
            except Exception as problem:  # the queue down must not take the metrics with it
                log.warning("the job queue cannot be read for /metrics: %s", problem)
                return text
            jobs = CollectorRegistry()
            jobs.register(_JobTotals(counts))
            text += generate_latest(jobs)
        return text


def observe_all(histogram: Histogram, amounts: list[float]) -> None:
    """histogram.observe(amount) for each of `amounts`, in one write to its sum and one to each
    bucket it fills. prometheus-client has no call for this: its histogram's parts are
    private (_sum, _buckets, _upper_bounds), so it is pinned, and tests/test_metrics.py checks
    that this gives observe's own samples."""
    counts = [0] * len(histogram._upper_bounds)
    for amount in amounts:  # observe's bucket: the first bound at or over the amount
        counts[bisect.bisect_left(histogram._upper_bounds, amount)] += 1
    histogram._sum.inc(sum(amounts))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


class _JobTotals:
    """The queue's job totals as metrics: the same on every replica (they are the queue's,
    not one server's), so aggregate them with max, not sum."""

    def __init__(self, counts: dict) -> None:
        self.counts = counts

    def collect(self) -> list:
        submitted = CounterMetricFamily("modelfly_jobs_submitted", "Jobs submitted (queue total)")
        submitted.add_metric([], self.counts["submitted"])
        finished = CounterMetricFamily("modelfly_jobs_finished", "Jobs finished (queue total)",
                                       labels=["status"])
        for status, count in self.counts["finished"].items():
            finished.add_metric([status], count)
        queued = GaugeMetricFamily("modelfly_jobs_queued", "Jobs waiting for a worker now",
                                   value=self.counts["queued"])
        rows = CounterMetricFamily("modelfly_job_rows_predicted", "Rows predicted by jobs "
                                   "(queue total)", value=self.counts["rows"])
        return [submitted, finished, queued, rows]

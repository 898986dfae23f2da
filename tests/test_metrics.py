"""server/metrics.py's seam with prometheus-client's private histogram parts: observe_all must
give exactly the samples that Histogram.observe gives for each amount."""

import asyncio

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from server.metrics import LATENCY_BUCKETS, Metrics, observe_all

AMOUNTS = [0.0001, 0.0005, 0.00051, 0.003, 0.003, 2.5, 4.99, 7.0, 120.0, 0.0]


def histogram_text(observe) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("t_seconds", "test", ["route"], buckets=LATENCY_BUCKETS,
                          registry=registry)
    observe(histogram.labels("/predict"))
    return b"\n".join(line for line in generate_latest(registry).splitlines()
                      if not line.startswith(b"t_seconds_created"))


def test_observe_all_gives_the_samples_of_observe_for_each_amount():
    def one_by_one(child):
        for amount in AMOUNTS:
            child.observe(amount)

    expected = histogram_text(one_by_one)
    assert b't_seconds_bucket{le="0.0005",route="/predict"} 3.0' in expected  # bounds inclusive
    assert b't_seconds_bucket{le="+Inf",route="/predict"} 10.0' in expected
    assert histogram_text(lambda child: observe_all(child, AMOUNTS)) == expected


def test_observations_of_one_loop_turn_are_written_at_its_end():
    metrics = Metrics()

    async def turn() -> tuple[float, float]:
        for _ in range(3):
            metrics.started()
            metrics.observe_request("/predict", "POST", 200, 0.002)
            metrics.batch_answered(1)
        unwritten = sample(metrics, "modelfly_batch_requests_count")
        await asyncio.sleep(0)  # the loop's turn ends: the flush runs
        return unwritten, sample(metrics, "modelfly_batch_requests_count")

    assert asyncio.run(turn()) == (0.0, 3.0)
    assert sample(metrics, "modelfly_http_request_duration_seconds_bucket",
                  {"route": "/predict", "le": "0.0025"}) == 3.0
    assert sample(metrics, "modelfly_http_request_duration_seconds_bucket",
                  {"route": "/predict", "le": "0.001"}) == 0.0
    assert sample(metrics, "modelfly_http_requests_total",
                  {"route": "/predict", "method": "POST", "status": "200"}) == 3.0


def test_without_a_loop_each_observation_is_written_at_once():
    metrics = Metrics()
    metrics.batch_answered(4)
    assert sample(metrics, "modelfly_batch_requests_sum") == 4.0


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float:
    registry = metrics._own
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value

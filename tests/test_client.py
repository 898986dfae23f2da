"""ModelClient against real servers on free ports: every method and input type, every error
class, retries, keep-alive, timeouts and sharing across threads."""

import subprocess
import sys
import threading
import time

import numpy
import pandas
import pytest
from helpers import GOOD_ROW, LittleServer, SilentServer, free_port, start_firefly

from client import (
    BadInput,
    ModelClient,
    ModelflyError,
    NotFound,
    ServerError,
    Unauthorized,
    Unavailable,
)
from predict import info, predict

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PENGUINS = [
    {"island": "Biscoe", "sex": "female", "bill_length_mm": 46.1, "bill_depth_mm": 13.2,
     "flipper_length_mm": 211.0, "body_mass_g": 4500.0},
    {"island": "Dream", "sex": None, "bill_length_mm": 50.0, "bill_depth_mm": 19.5,
     "flipper_length_mm": None, "body_mass_g": 3900.0},
]


@pytest.fixture(scope="module")
def client(firefly_cli):
    with ModelClient(firefly_cli.url) as client:
        yield client


@pytest.mark.parametrize("features, expected", [
    (GOOD_ROW, GOOD_ROW),
    ([GOOD_ROW, [5.1, 3.5, 1.4, 0.2]], [GOOD_ROW, [5.1, 3.5, 1.4, 0.2]]),
    (dict(zip(IRIS, GOOD_ROW, strict=True)), GOOD_ROW),
    ([dict(zip(IRIS, GOOD_ROW, strict=True))] * 2, [GOOD_ROW] * 2),
    (numpy.array(GOOD_ROW), GOOD_ROW),
    (numpy.array([GOOD_ROW, [5.1, 3.5, 1.4, 0.2]]), [GOOD_ROW, [5.1, 3.5, 1.4, 0.2]]),
    ([numpy.float32(5.9), numpy.int64(3), 5.1, 1.8], [5.900000095367432, 3, 5.1, 1.8]),
    (pandas.DataFrame([GOOD_ROW, [6.0, 2.7, 4.1, 1.3]], columns=IRIS),
     [GOOD_ROW, [6.0, 2.7, 4.1, 1.3]]),
    (pandas.Series(GOOD_ROW, index=IRIS), GOOD_ROW),
], ids=["row", "rows", "record", "records", "numpy-1d", "numpy-2d", "numpy-scalars",
        "dataframe", "series"])
def test_predict_every_input_type(client, features, expected):
    assert client.predict(features) == predict(expected)


def test_dataframe_with_missing_values_and_categories(client):
    frame = pandas.DataFrame(PENGUINS).astype({"flipper_length_mm": float})
    assert frame["flipper_length_mm"].isna().any()  # NaN in the frame is sent as null
    assert client.predict(frame, model="penguins") == predict(PENGUINS, "penguins")


def test_info_and_health(client):
    assert client.info() == info()
    assert client.info("penguins") == info("penguins")
    assert client.health() == {"status": "ok", "default_model": "iris",
                               "models": ["diabetes", "iris", "penguins"]}


@pytest.mark.parametrize("features, model, kind, status, message", [
    ([1, 2, 3], None, BadInput, 400, "row 0 has 3 value(s); expected 4"),
    ([GOOD_ROW] * 10_001, None, BadInput, 413, "at most 10000"),
    (GOOD_ROW, "tulips", NotFound, 404, 'unknown model "tulips"'),
    ([float("nan"), 1, 2, 3], None, BadInput, 400, "received NaN"),
])
def test_refusals_are_typed_and_carry_the_servers_message(client, features, model, kind,
                                                          status, message):
    with pytest.raises(kind) as refusal:
        client.predict(features, model)
    assert refusal.value.status == status and message in str(refusal.value)
    assert client.url in str(refusal.value)
    assert isinstance(refusal.value, ModelflyError)


def test_unauthorized_and_the_token(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", "--token", "s3cret")
    try:
        with pytest.raises(Unauthorized) as refusal:
            ModelClient(server.url).predict(GOOD_ROW)
        assert refusal.value.status == 403
        with pytest.raises(Unauthorized):
            ModelClient(server.url, token="wrong").predict(GOOD_ROW)
        assert ModelClient(server.url, token="s3cret").predict(GOOD_ROW) == predict(GOOD_ROW)
    finally:
        server.stop()


def test_server_fault_is_a_server_error(tmp_path):
    server = start_firefly(tmp_path, "-c", "firefly.yml", env={"MODELFLY_MAX_ROWS": "lots"})
    try:
        with pytest.raises(ServerError) as fault:
            ModelClient(server.url).predict(GOOD_ROW)
        assert fault.value.status == 500 and "misconfigured" in str(fault.value)
    finally:
        server.stop()


def test_an_unused_port_is_unavailable_quickly():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(Unavailable, match="connection refused \\(after 2 retries\\)") as error:
        ModelClient(url, retries=2, backoff=0.01).predict(GOOD_ROW)
    assert time.monotonic() - started < 2
    assert url in str(error.value) and error.value.status is None


@pytest.mark.parametrize("retries", [0, 2])
def test_a_silent_server_fails_within_the_timeout(retries):
    silent = SilentServer()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no answer within 0.5 s"):
            ModelClient(silent.url, timeout=(1, 0.5), retries=retries, backoff=0.01).health()
        elapsed = time.monotonic() - started
        # each attempt waits the read timeout; nothing waits longer
        assert 0.5 * (retries + 1) <= elapsed < 0.5 * (retries + 1) + 1.0, elapsed
    finally:
        silent.stop()


def test_a_truncated_answer_is_unavailable_not_a_raw_exception():
    broken = SilentServer(hang_up_after_headers=True)
    try:
        with pytest.raises(Unavailable):
            ModelClient(broken.url, retries=1, backoff=0.01).predict(GOOD_ROW)
    finally:
        broken.stop()


def test_an_answer_cut_off_mid_body_is_retried():
    server = LittleServer(answer={"predictions": ["ok"]}, truncate_first=2)
    try:
        answer = ModelClient(server.url, retries=2, backoff=0.01).predict(GOOD_ROW)
        assert answer == {"predictions": ["ok"]} and server.requests == 3
    finally:
        server.stop()
    server = LittleServer(answer={"predictions": ["ok"]}, truncate_first=5)
    try:
        with pytest.raises(Unavailable, match="the answer broke off before its end"):
            ModelClient(server.url, retries=2, backoff=0.01).predict(GOOD_ROW)
        assert server.requests == 3
    finally:
        server.stop()


def test_retries_ride_out_503s():
    server = LittleServer(answer={"predictions": ["ok"]}, fail_first=2, fail_status=503)
    try:
        answer = ModelClient(server.url, retries=3, backoff=0.01).predict(GOOD_ROW)
        assert answer == {"predictions": ["ok"]} and server.requests == 3
    finally:
        server.stop()


@pytest.mark.parametrize("status", [502, 503, 504])
def test_retries_run_out(status):
    server = LittleServer(fail_first=10, fail_status=status)
    try:
        with pytest.raises(Unavailable, match="still failing after retries") as error:
            ModelClient(server.url, retries=2, backoff=0.01).predict(GOOD_ROW)
        assert error.value.status == status and server.requests == 3
    finally:
        server.stop()


def test_no_retry_on_a_refusal_or_a_500():
    for status, kind in ((400, BadInput), (500, ServerError)):
        server = LittleServer(fail_first=10, fail_status=status)
        try:
            with pytest.raises(kind):
                ModelClient(server.url, retries=3, backoff=0.01).predict(GOOD_ROW)
            assert server.requests == 1
        finally:
            server.stop()


def test_keep_alive_reuses_one_connection():
    server = LittleServer(answer={"predictions": ["ok"]})
    try:
        with ModelClient(server.url) as client:
            for _ in range(100):
                client.predict(GOOD_ROW)
        assert (server.requests, server.connections) == (100, 1)
    finally:
        server.stop()


def test_firefly_client_opens_a_connection_per_call():
    """The reason ModelClient exists: firefly.Client against the same kind of server."""
    import firefly

    server = LittleServer(answer={"predictions": ["ok"]})
    try:
        remote = firefly.Client(server.url)
        remote._metadata = {}  # skip its index fetch
        for _ in range(20):
            remote.predict(features=GOOD_ROW)
        assert server.connections == 20
    finally:
        server.stop()


def test_sixteen_threads_share_one_client(client):
    rows = [[4.3 + (i % 36) / 10, 2.0 + (i % 24) / 10, 1.0 + (i % 59) / 10, 0.1 + (i % 25) / 10]
            for i in range(16 * 8)]
    wrong, barrier = [], threading.Barrier(16)

    def caller(offset: int) -> None:
        barrier.wait()
        for row in rows[offset::16]:
            if client.predict(row) != predict(row):
                wrong.append(row)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads) and wrong == []


def test_a_bad_url_is_refused_at_once():
    with pytest.raises(ValueError, match="url must look like http://host:port"):
        ModelClient("127.0.0.1:5000")


def test_numpy_and_pandas_are_not_imported_by_the_client():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, client; client.ModelClient();"
         "print('numpy' in sys.modules, 'pandas' in sys.modules)"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    assert out.split() == ["False", "False"]

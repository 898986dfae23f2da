"""server/http.py and server/greenlets.py: HTTP/1.1 on an event loop, over real sockets, with a
small WSGI app that shows what it received; and plain code waiting for the loop. The worker
serving the real app is tested through `python serve.py` (test_serve.py, test_reliability.py)."""

import asyncio
import json
import socket
import threading
import time

import pytest

from server import greenlets
from server.guard import BodyCutShort, BodyTimeout
from server.http import HEAD_LIMIT, HttpServer
from server.settings import ServerSettings

READ_TIMEOUT = 0.3


def shown(environ: dict, start_response) -> list[bytes]:
    """What the app received: the environ's strings, the body's length or why it is missing."""
    try:
        body = environ["wsgi.input"].read()
        status, outcome = "200 OK", len(body)
    except BodyTimeout:
        status, outcome = "408 Request Timeout", "timeout"
    except BodyCutShort:
        status, outcome = "400 Bad Request", "cut short"
    if environ["PATH_INFO"] == "/wait":  # plain code that waits for the loop in the middle
        greenlets.wait(asyncio.sleep(0.05))
    answer = {key: value for key, value in environ.items() if isinstance(value, str)}
    answer["body"] = outcome
    if environ["PATH_INFO"] == "/stream":
        start_response(status, [("Content-Type", "text/plain")])
        return iter([b"one,", b"", b"two"])
    if environ["PATH_INFO"] == "/stream-fails":
        start_response(status, [("Content-Type", "text/plain")])
        return failing()
    payload = json.dumps(answer).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload)))])
    return [payload]


def failing():
    yield b"one,"
    raise KeyError("the store lost the rest")


@pytest.fixture(scope="module")
def port():
    loop = asyncio.new_event_loop()
    settings = ServerSettings(max_body_bytes=100, read_timeout=READ_TIMEOUT)
    http = HttpServer(shown, settings, {"SCRIPT_NAME": ""}, max_connections=50,
                      close_every=1000)

    async def start() -> asyncio.Server:
        server = await loop.create_server(http.connection, "127.0.0.1", 0)
        http.watch()
        return server

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def exchange(port: int, data: bytes, wait: float = 0, half_close: bool = False) -> bytes:
    """Send `data` (then wait, or shut the sending half) and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if wait:
            time.sleep(wait)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def answers(raw: bytes, heads: tuple[int, ...] = ()) -> list[tuple[int, dict, bytes]]:
    """The answers in `raw`, in order: (status, headers in lower case, body); those numbered
    in `heads` answer a HEAD (no body)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size, _, raw = raw.partition(b"\r\n")
                body, raw = body + raw[:int(size, 16)], raw[int(size, 16) + 2:]
                if size == b"0":
                    break
        else:
            length = 0 if len(found) in heads else int(headers.get("content-length", 0))
            body, raw = raw[:length], raw[length:]
        found.append((int(lines[0].split()[1]), headers, body))
    return found


def one(port: int, data: bytes, **how) -> tuple[int, dict, bytes]:
    (answer,) = answers(exchange(port, data, **how))
    return answer


def test_the_environ_of_a_request(port):
    status, headers, body = one(port, (
        b"POST /pre%64ict?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nX-Tag: a\r\nX-Tag: b\r\nX_Token: sneaked\r\n"
        b"Authorization: Token t\r\nConnection: close\r\n\r\n{}"))
    environ = json.loads(body)
    assert status == 200 and headers["connection"] == "close" and "date" in headers
    assert environ["PATH_INFO"] == "/predict" and environ["QUERY_STRING"] == "a=1"
    assert environ["REQUEST_METHOD"] == "POST" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "application/json" and environ["CONTENT_LENGTH"] == "2"
    assert environ["HTTP_X_TAG"] == "a,b"  # repeated headers are joined, as WSGI asks
    assert environ["HTTP_AUTHORIZATION"] == "Token t"
    # an underscore would let X_Token pass for X-Token: dropped, as gunicorn does
    assert "HTTP_X_TOKEN" not in environ
    assert (environ["REMOTE_ADDR"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "127.0.0.1", "127.0.0.1", str(port))
    assert environ["body"] == 2


def test_kept_connections_answer_pipelined_requests_in_order(port):
    data = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"  # waits for the loop: the next must wait
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
            b"HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    found = answers(exchange(port, data), heads=(3,))
    assert [json.loads(body)["PATH_INFO"] for _, _, body in found[:3]] == ["/a", "/wait", "/c"]
    assert [json.loads(body)["body"] for _, _, body in found[:3]] == [3, 0, 5]
    status, headers, body = found[3]  # HEAD: the length of what GET would send, no body
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, headers, body = found[4]
    assert headers["transfer-encoding"] == "chunked" and body == b"one,two"
    assert json.loads(found[5][2])["PATH_INFO"] == "/f" and len(found) == 6


def test_an_http_1_0_client_is_answered_and_closed(port):
    status, headers, body = one(port, b"GET /old HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["connection"] == "close"
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_expect_100_continue_is_answered_before_the_body(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        assert json.loads(answers(sock.recv(65536))[0][2])["body"] == 2


def test_a_body_over_the_limit_is_not_read_and_the_connection_closes(port):
    # declared: the app is called at once, with nothing read (the guard answers 413)
    status, headers, body = one(port, b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                      b"101\r\n\r\n" + b"x" * 101)
    assert json.loads(body)["body"] == 0 and headers["connection"] == "close"
    # chunked: read until past the limit, no further
    chunks = b"".join(b"3c\r\n" + b"x" * 60 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    status, headers, body = one(port, b"POST /big HTTP/1.1\r\nHost: x\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert 100 < json.loads(body)["body"] < 600 and headers["connection"] == "close"


def test_a_body_that_stalls_is_given_up_after_the_read_timeout(port):
    started = time.monotonic()
    status, headers, body = one(port, b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                      b"10\r\n\r\n{")
    assert status == 408 and json.loads(body)["body"] == "timeout"
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT * 1.25 + 1
    assert headers["connection"] == "close"


def test_a_body_cut_short_by_the_client_is_answered_on_the_open_half(port):
    status, _, body = one(port, b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                                b"\r\n{", half_close=True)
    assert status == 400 and json.loads(body)["body"] == "cut short"


def test_idle_and_stalled_heads_are_closed_after_the_read_timeout(port):
    for data in (b"", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty"):
        started = time.monotonic()
        assert exchange(port, data) == b""  # closed by the server, nothing answered
        assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT * 1.25 + 1


@pytest.mark.parametrize("data, status, message", [
    (b"GARBAGE\r\n\r\n", 501, "method"),
    (b"BREW /pot HTTP/1.1\r\n\r\n", 501, "method"),
    (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "malformed"),
    (b"GET /x HTTP/9.9\r\n\r\n", 400, "malformed"),
    (b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * (HEAD_LIMIT + 300_000), 431, "headers are over"),
])
def test_what_is_no_http_is_refused(port, data, status, message):
    answer_status, headers, body = one(port, data)
    assert answer_status == status and message in json.loads(body)["error"]
    assert headers["connection"] == "close"


def test_plain_code_in_a_greenlet_waits_for_the_loop():
    order = []

    def plain(name: str, delay: float) -> str:
        order.append(f"{name} starts")
        assert greenlets.inside()
        slept = greenlets.wait(asyncio.sleep(delay, result=delay))
        order.append(f"{name} resumes")
        return f"{name} {slept}"

    pool = greenlets.Pool()

    async def both() -> list:
        return await asyncio.gather(pool.run(plain, "a", 0.05), pool.run(plain, "b", 0.01))

    assert asyncio.run(both()) == ["a 0.05", "b 0.01"]
    assert order == ["a starts", "b starts", "b resumes", "a resumes"]
    assert not greenlets.inside()


def test_a_call_that_does_not_wait_is_done_at_once_in_a_reused_greenlet():
    pool = greenlets.Pool()
    assert pool.call(lambda x: (greenlets.inside(), x), 1) == (True, (True, 1))
    reused = pool._idle[:]
    assert pool.call(str, 2) == (True, "2") and pool._idle == reused
    with pytest.raises(KeyError):
        pool.call({}.__getitem__, "missing")
    assert pool._idle == reused  # given back after raising too


def test_an_error_awaited_for_a_greenlet_is_raised_where_it_waited():
    async def fails() -> None:
        raise KeyError("inner")

    def plain() -> str:
        try:
            greenlets.wait(fails())
        except KeyError as error:
            return f"caught {error}"
        return "not raised"

    assert asyncio.run(greenlets.Pool().run(plain)) == "caught 'inner'"


def test_a_streamed_answer_that_fails_midway_ends_unfinished(port):
    raw = exchange(port, b"GET /stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"\r\n4\r\none,\r\n" in raw
    assert not raw.endswith(b"0\r\n\r\n")  # no last chunk: the client knows it is cut short

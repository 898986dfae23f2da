"""server/worker.py and server/greenlets.py: the WSGI environ of a request, its body read
under the limit and the deadline, and plain code waiting for the event loop. The worker serving
real requests is tested through `python serve.py` (test_serve.py, test_reliability.py)."""

import asyncio
from types import SimpleNamespace

import pytest

from server import greenlets
from server.guard import BodyTimeout
from server.settings import ServerSettings
from server.worker import GranianWorker, _NoBody


class Headers(list):
    """RSGI headers: (name, value) pairs, names in lower case, repeats kept."""

    def items(self) -> list:
        return list(self)


def worker(max_body_bytes: int = 100, read_timeout: float = 0.2) -> GranianWorker:
    made = object.__new__(GranianWorker)  # its per-process state only, without gunicorn's
    made.settings = ServerSettings(max_body_bytes=max_body_bytes, read_timeout=read_timeout)
    made.base_environ = {"SCRIPT_NAME": ""}
    return made


def scope(path: str = "/predict", headers: list | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        method="POST", path=path, query_string="a=1", server="127.0.0.1:8000",
        client="10.0.0.7:51000", http_version="1.1", scheme="http",
        headers=Headers(headers or []))


def test_the_environ_of_a_request():
    environ = worker().environ(scope("/pre%64ict", [
        ("content-type", "application/json"), ("content-length", "12"), ("x-tag", "a"),
        ("x-tag", "b"), ("x_token", "sneaked"), ("authorization", "Token t")]))
    assert environ["PATH_INFO"] == "/predict" and environ["QUERY_STRING"] == "a=1"
    assert environ["CONTENT_TYPE"] == "application/json" and environ["CONTENT_LENGTH"] == "12"
    assert environ["HTTP_X_TAG"] == "a,b"  # repeated headers are joined, as WSGI asks
    assert environ["HTTP_AUTHORIZATION"] == "Token t"
    # an underscore would let X_Token pass for X-Token: dropped, as gunicorn does
    assert "HTTP_X_TOKEN" not in environ
    assert (environ["REMOTE_ADDR"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "10.0.0.7", "127.0.0.1", "8000")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1" and environ["wsgi.url_scheme"] == "http"


class Body:
    """An RSGI request body: awaited whole, or iterated in chunks; `stall` never ends."""

    def __init__(self, chunks: list[bytes], stall: bool = False) -> None:
        self.chunks, self.stall, self.taken = chunks, stall, 0

    async def __call__(self) -> bytes:
        if self.stall:
            await asyncio.sleep(60)
        return b"".join(self.chunks)

    async def __aiter__(self):
        for chunk in self.chunks:
            self.taken += 1
            yield chunk
        if self.stall:
            await asyncio.sleep(60)


def read(environ: dict, body: Body, **settings) -> bytes | type[Exception]:
    return asyncio.run(worker(**settings).read_body(body, environ))


def test_bodies_are_read_whole_within_the_limit():
    assert read({"CONTENT_LENGTH": "6"}, Body([b"abc", b"def"])) == b"abcdef"
    assert read({"HTTP_TRANSFER_ENCODING": "chunked"}, Body([b"abc", b"def"])) == b"abcdef"
    assert read({}, Body([b"ignored"])) == b""  # neither a length nor chunks: no body


def test_a_body_over_the_limit_is_not_read_in_full():
    # declared: not read at all; chunked: read until one chunk past the limit
    assert read({"CONTENT_LENGTH": "101"}, Body([b"x" * 101])) == b""
    chunks = Body([b"x" * 60] * 10)
    assert read({"HTTP_TRANSFER_ENCODING": "chunked"}, chunks) == b"x" * 120
    assert chunks.taken == 2


@pytest.mark.parametrize("environ", [{"CONTENT_LENGTH": "6"},
                                     {"HTTP_TRANSFER_ENCODING": "chunked"}])
def test_a_body_that_stalls_is_given_up_after_the_read_timeout(environ):
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        assert loop.run_until_complete(
            worker(read_timeout=0.2).read_body(Body([b"{"], stall=True), environ)) is BodyTimeout
        assert 0.2 <= loop.time() - started < 2
    finally:
        loop.close()
    with pytest.raises(BodyTimeout):  # which the guard answers with a 408
        _NoBody(BodyTimeout).read(6)


def test_plain_code_in_a_greenlet_waits_for_the_loop():
    order = []

    def plain(name: str, delay: float) -> str:
        order.append(f"{name} starts")
        assert greenlets.inside()
        slept = greenlets.wait(asyncio.sleep(delay, result=delay))
        order.append(f"{name} resumes")
        return f"{name} {slept}"

    async def both() -> list:
        return await asyncio.gather(greenlets.run(plain, "a", 0.05),
                                    greenlets.run(plain, "b", 0.01))

    assert asyncio.run(both()) == ["a 0.05", "b 0.01"]
    assert order == ["a starts", "b starts", "b resumes", "a resumes"]
    assert not greenlets.inside()


def test_an_error_awaited_for_a_greenlet_is_raised_where_it_waited():
    async def fails() -> None:
        raise KeyError("inner")

    def plain() -> str:
        try:
            greenlets.wait(fails())
        except KeyError as error:
            return f"caught {error}"
        return "not raised"

    assert asyncio.run(greenlets.run(plain)) == "caught 'inner'"

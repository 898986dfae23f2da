"""server/batcher.py: concurrent requests share model calls, plugged into the core's registry
as its answerer; a request cancelled while it waits leaves the others answered."""

import asyncio

import numpy
import orjson
import pytest

from modelfly.card import answers_match
from modelfly.registry import Registry
from modelfly.settings import Settings
from predict import predict
from server import greenlets
from server.batcher import Batcher, Batching, joined


def test_the_registry_answers_through_the_model_until_the_server_plugs_in_its_batcher():
    registry = Registry(Settings())
    iris = registry.get("iris")
    rows = [[5.9, 3.0, 5.1, 1.8]]
    assert registry.answer(iris, rows) == iris.answer(rows) == predict(rows)
    sizes: list[int] = []
    registry.answerer = Batching(max_rows=1000, max_wait=0, on_batch=sizes.append)
    assert registry.answer(iris, rows) == iris.answer(rows)  # outside greenlets: directly
    assert sizes == [] and registry.answerer.batchers == {}

    async def inside_greenlets() -> list:
        return await asyncio.gather(*(greenlets.Pool().run(registry.answer, iris, rows)
                                      for _ in range(3)))

    # in a batch of three rows, numpy may take another path: the last bits can differ
    assert all(answers_match(orjson.loads(orjson.dumps(batched)), iris.answer(rows))
               for batched in asyncio.run(inside_greenlets()))
    assert list(registry.answerer.batchers) == [iris] and sum(sizes) == 3
    off = Batching(max_rows=1, max_wait=0, on_batch=sizes.append)  # MODELFLY_BATCH_MAX_ROWS=1
    assert orjson.dumps(asyncio.run(greenlets.Pool().run(off, iris, rows))) == orjson.dumps(
        iris.answer(rows))
    assert off.batchers == {}


def test_rows_of_several_requests_join_in_order():
    many = numpy.array([[1.0, 2.0], [3.0, 4.0]])
    assert joined([many]) is many
    together = joined([many, numpy.array([[5.0, 6.0]])])
    assert together.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert joined([[[0.5, None]], many, [["a", 1.0]]]) == [
        [0.5, None], [1.0, 2.0], [3.0, 4.0], ["a", 1.0]]


class _Doubling:
    """A stand-in model: answers each row with its double, records the rows of each call."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    def answer(self, rows: list) -> dict:
        self.calls.append(rows)
        return {"model": "doubling", "predictions": [row[0] * 2 for row in rows]}


@pytest.mark.parametrize("dear", [True, False])
def test_the_batcher_coalesces_for_a_dear_model_and_calls_a_cheap_one_at_once(dear):
    model, sizes = _Doubling(), []
    batcher = Batcher(model, max_rows=100, max_wait=0, on_batch=sizes.append)
    # a dear model's leader lets the others join; a cheap one's is called at once
    batcher.call_seconds = 1.0 if dear else 0.0

    async def three_callers() -> list:
        pool = greenlets.Pool()
        return await asyncio.gather(*(pool.run(batcher.answer, [[float(i)], [float(i) + 0.5]])
                                      for i in range(3)))

    answers = asyncio.run(three_callers())
    assert [a["predictions"] for a in answers] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert sizes == ([3] if dear else [1, 1, 1])
    assert len(model.calls) == len(sizes)
    assert batcher.queue == []


@pytest.mark.parametrize("cancelled", [0, 1])
def test_a_caller_cancelled_while_batching_leaves_the_others_answered(cancelled):
    # 0: the leader, while it lets others join; 1: a follower, while it waits for the batch
    model = _Doubling()
    # one request a batch: each answered caller hands the lead to the next in the queue
    batcher = Batcher(model, max_rows=1, max_wait=0)
    batcher.call_seconds = 1.0  # dear: the leader waits for others to join

    async def three_callers() -> list:
        callers = [asyncio.create_task(greenlets.Pool().run(batcher.answer, [[float(i)]]))
                   for i in range(3)]
        await asyncio.sleep(0)  # all three have queued; the first leads
        callers[cancelled].cancel()
        return await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 10)

    answers = asyncio.run(three_callers())
    assert isinstance(answers[cancelled], asyncio.CancelledError)
    assert [a["predictions"] for i, a in enumerate(answers) if i != cancelled] == [
        [float(2 * i)] for i in range(3) if i != cancelled]
    assert batcher.queue == []

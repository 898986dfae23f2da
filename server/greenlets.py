"""Plain (synchronous) code run on an asyncio loop, able to wait for the loop in the middle.

The production worker (server/http.py) runs each request's WSGI app in a greenlet on its event
loop. Code deep inside the app (the batcher) can call `wait(awaitable)`: its greenlet is
suspended, the loop runs other requests, and the code resumes with the awaitable's result, as if
it had been awaited. This is how SQLAlchemy's asyncio layer runs its synchronous core. Outside
such a greenlet (a notebook, the Firefly CLI) `inside()` is false and nothing ever waits.

A call that never waits (most: a cheap model with nobody to batch with) is done before
`Pool.call` returns, with no task and no turn of the loop. Greenlets are reused: a new one
costs a fresh Python frame stack (an mmap and a munmap per request, measured with strace).
"""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from greenlet import GreenletExit, getcurrent, greenlet

_DONE, _RAISED, _WAITS = object(), object(), object()


class _Green(greenlet):
    """A pooled greenlet: runs the calls it is given one after another; reports each call's
    end, or its wait, to the greenlet that gave it."""

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(self, function: Callable, args: tuple) -> None:
        while True:
            try:
                outcome = (_DONE, function(*args))
            except GreenletExit:  # killed while it waited: it ends
                raise
            except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
                outcome = (_RAISED, error)
            try:
                function, args = self.parent.switch(outcome)
            except GreenletExit:  # its pool is gone
                return


class Pool:
    """Greenlets for one thread's loop, each taken for one call and then given back."""

    def __init__(self) -> None:
        self._idle: list[_Green] = []

    def call(self, function: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """function(*args) in a greenlet: (True, its result) if it finished without waiting,
        else (False, a coroutine that finishes it and returns its result). Raises what it
        raised."""
        green = self._idle.pop() if self._idle else _Green()
        return self._step(green, green.switch(function, args))

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """function(*args) in a greenlet; each awaitable it passes to wait() is awaited here."""
        done, result = self.call(function, *args)
        return result if done else await result

    def _step(self, green: _Green, outcome: tuple) -> tuple[bool, Any]:
        kind, value = outcome
        if kind is _WAITS:
            return False, self._finish(green, value)
        self._idle.append(green)
        if kind is _RAISED:
            raise value
        return True, value

    async def _finish(self, green: _Green, awaitable: Awaitable) -> Any:
        outcome = (_WAITS, awaitable)
        while outcome[0] is _WAITS:
            try:
                result = await outcome[1]
            except BaseException as error:  # raised inside the greenlet, where wait() was called
                outcome = green.throw(error)
            else:
                outcome = green.switch(result)
        return self._step(green, outcome)[1]


def inside() -> bool:
    """Whether this code runs in a greenlet of a Pool, so that it may wait()."""
    return isinstance(getcurrent(), _Green)


def wait(awaitable: Awaitable | Coroutine) -> Any:
    """The result of awaiting `awaitable`, from plain code inside a Pool's call."""
    return getcurrent().parent.switch((_WAITS, awaitable))

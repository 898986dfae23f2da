"""Plain (synchronous) code run on an asyncio loop, able to wait for the loop in the middle.

The production worker (server/worker.py) runs each request's WSGI app in a greenlet on its event
loop: `await run(call_wsgi, app, environ)`. Code deep inside the app (the batcher) can
then call `wait(awaitable)`: its greenlet is suspended, the loop runs other requests, and the
code resumes with the awaitable's result, as if it had been awaited. This is how
SQLAlchemy's asyncio layer runs its synchronous core. Outside such a greenlet (a notebook,
the Firefly CLI) `inside()` is false and nothing ever waits.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from greenlet import getcurrent, greenlet


class _Green(greenlet):
    """A greenlet started by run(), whose parent awaits what it is asked to."""


async def run(function: Callable[..., Any], *args: Any) -> Any:
    """function(*args) in a greenlet; each awaitable it passes to wait() is awaited here."""
    green = _Green(function)
    asked = green.switch(*args)
    while not green.dead:
        try:
            result = await asked
        except BaseException as error:  # raised inside the greenlet, where wait() was called
            asked = green.throw(error)
        else:
            asked = green.switch(result)
    return asked


def inside() -> bool:
    """Whether this code runs in a greenlet started by run(), so that it may wait()."""
    return isinstance(getcurrent(), _Green)


def wait(awaitable: Awaitable) -> Any:
    """The result of awaiting `awaitable`, from plain code inside run()."""
    return getcurrent().parent.switch(awaitable)

"""Job: a batch submitted to a modelfly server's queue (`ModelClient.submit`), predicted in
the background; poll it, wait for it, fetch its answers, cancel it.

    >>> job = client.submit(rows)                     # doctest: +SKIP
    >>> job.wait(timeout=600)["predictions"][:2]      # doctest: +SKIP
    ['virginica', 'setosa']
"""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from client.errors import BadInput, Unavailable

if TYPE_CHECKING:
    from client.model_client import ModelClient

FIRST_POLL, LAST_POLL = 0.1, 2.0  # seconds between polls: from the first to the longest


class Job:
    def __init__(self, client: "ModelClient", job_id: str) -> None:
        self.client, self.id = client, job_id

    def status(self) -> dict:
        """{"status": queued | running | succeeded | failed | cancelled, "rows", "rows_done",
        "error", ...}"""
        return self.client.request("GET", f"/jobs/{self.id}")

    def result(self) -> dict:
        """The answer, as `predict` gives it, for all the rows; NotFound once expired, BadInput
        (409) while the job is not finished."""
        return self.client.request("GET", f"/jobs/{self.id}/result")

    def cancel(self) -> dict:
        """Cancel the job (a running one stops at its next chunk) and delete its data."""
        return self.client.request("DELETE", f"/jobs/{self.id}")

    def wait(self, timeout: float | None = None,
             progress: Callable[[dict], None] | None = None) -> dict:
        """The answer, once the job has succeeded. A failed or cancelled job raises BadInput
        with its error; no end within `timeout` seconds raises Unavailable. `progress(status)`
        is called after each poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = FIRST_POLL
        while True:
            state = self.status()
            if progress:
                progress(state)
            if state["status"] == "succeeded":
                return self.result()
            if state["status"] in ("failed", "cancelled"):
                raise BadInput(f"job {self.id} {state['status']}: "
                               f"{state.get('error') or 'cancelled by a DELETE'}", 400)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise Unavailable(f"job {self.id} did not finish within {timeout} s: it is "
                                  f"{state['status']}, {state['rows_done']} of {state['rows']} "
                                  "rows done")
            time.sleep(delay)
            delay = min(delay * 1.5, LAST_POLL)

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

"""What ModelClient raises: one base class, one subclass per thing a caller can act on."""


class ModelflyError(Exception):
    """Base of every error the client raises; no raw `requests` exception escapes.

    status: the HTTP status the server answered, or None when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BadInput(ModelflyError):
    """The server refused the request (a 4xx): the message is the server's, saying why."""


class Unauthorized(ModelflyError):
    """The server wants a token (401) or refused the one sent (403)."""


class NotFound(ModelflyError):
    """No such model or path on the server (404)."""


class ServerError(ModelflyError):
    """The server failed on a good request (a 5xx other than 502/503/504)."""


class Unavailable(ModelflyError):
    """No usable answer: connection refused, timed out, or still 502/503/504 after retries."""

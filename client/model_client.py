"""ModelClient: call a modelfly server from Python without thinking about HTTP.

    >>> from client import ModelClient
    >>> with ModelClient("http://127.0.0.1:5000") as client:        # doctest: +SKIP
    ...     client.predict([5.9, 3.0, 5.1, 1.8])["predictions"]
    ['virginica']

One `requests.Session` per client (keep-alive, safe to share across threads), a connect and a
read timeout on every call, retries with backoff on connection errors and 502/503/504, and
typed errors (client.errors) instead of raw `requests` exceptions.
"""

import json
import math
import os
import re
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from client.errors import BadInput, ModelflyError, NotFound, ServerError, Unauthorized, Unavailable
from client.job import Job

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_TIMEOUT = (3.05, 30.0)  # seconds to connect, seconds to wait for the answer
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2  # seconds; doubles at each retry
RETRY_STATUSES = (502, 503, 504)


class ModelClient:
    """A modelfly server at `url`.

    token: sent as `Authorization: Token <token>` (Firefly's scheme) when given.
    timeout: seconds, or (connect, read) seconds, for each attempt; default (3.05, 30).
    retries: extra attempts after a connection error, a lost answer or a 502/503/504, with
        exponential backoff from `backoff` seconds (predict is idempotent, so POST is retried).
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 pool_size: int = 32) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must look like http://host:port, received {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.session = requests.Session()
        # Proxy and CA settings are read from the environment once, here, rather than on
        # every call (a quarter of requests' per-call cost).
        self.session.proxies = requests.utils.get_environ_proxies(self.url)
        self.session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                               or os.environ.get("CURL_CA_BUNDLE") or True)
        self.session.trust_env = False
        if token:
            self.session.headers["Authorization"] = f"Token {token}"
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      other=0, backoff_factor=backoff, status_forcelist=RETRY_STATUSES,
                      allowed_methods=frozenset({"GET", "POST", "DELETE"}),
                      raise_on_status=False,
                      respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def predict(self, features: Any, model: str | None = None,
                version: str | None = None) -> dict:
        """Predictions for one row, many rows, one record, many records, a numpy array
        (1-D: one row, 2-D: rows) or a pandas DataFrame (sent as records).

        >>> client.predict([[5.9, 3.0, 5.1, 1.8]], model="iris")["predictions"]  # doctest: +SKIP
        ['virginica']
        """
        return self._call("/predict", {"features": to_plain(features),
                                       **_model(model, version)})

    def info(self, model: str | None = None, version: str | None = None) -> dict:
        """The model's card: features, classes, metrics, versions, an example input."""
        return self._call("/info", _model(model, version))

    def health(self) -> dict:
        """The server's liveness answer, e.g. {"status": "ok", "models": [...]}."""
        return self._call("/health", {})

    def submit(self, features: Any, model: str | None = None,
               version: str | None = None) -> Job:
        """A job for `features` (any shape predict takes, up to MODELFLY_JOB_MAX_ROWS rows),
        queued at once and predicted by the server's workers; checked as predict checks.
        A submission retried after a lost answer may queue the rows twice: the job not
        followed expires unused."""
        answer = self.request("POST", "/jobs", {"features": to_plain(features),
                                                **_model(model, version)})
        return Job(self, answer["job_id"])

    def submit_csv(self, data: bytes, model: str | None = None,
                   version: str | None = None) -> Job:
        """A job for a CSV file's bytes (a header row of feature names, then one row per
        line), sent as they are."""
        answer = self.request("POST", "/jobs", data=data, params=_model(model, version),
                              content_type="text/csv")
        return Job(self, answer["job_id"])

    def job(self, job_id: str) -> Job:
        """A job submitted earlier, by its id."""
        return Job(self, job_id)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "ModelClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, path: str, payload: dict) -> dict:
        return self.request("POST", path, payload)

    def request(self, method: str, path: str, payload: Any = None, *, data: bytes | None = None,
                params: dict | None = None, content_type: str = "application/json") -> dict:
        """One call: `payload` sent as JSON (or `data` as it is), the JSON answer returned or
        the server's refusal raised as a typed error."""
        url = self.url + path
        body = data if payload is None else json.dumps(payload, default=_plain_scalar)
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, data=body, params=params,
                                                timeout=self.timeout, headers=headers)
                return _answer(response, f"{method} {url}")
            except requests.exceptions.ChunkedEncodingError as error:
                # An answer cut off mid-body (a worker killed while sending it): urllib3's
                # Retry has handed the response over by then, so this one case retries here.
                if attempt == self.retries:
                    what = _what_happened(error, self.timeout, self.retries)
                    raise Unavailable(f"{method} {url}: {what}") from error
            except requests.RequestException as error:
                what = _what_happened(error, self.timeout, self.retries)
                raise Unavailable(f"{method} {url}: {what}") from error
        raise AssertionError("unreachable")  # the loop returns or raises


def to_plain(features: Any) -> Any:
    """numpy arrays and pandas objects as JSON-ready lists and records; others unchanged.

    Checked by type name, so numpy and pandas are never imported here.
    """
    module = type(features).__module__.split(".")[0]
    if module == "pandas" and hasattr(features, "to_dict"):
        frame = features.to_frame().T if features.ndim == 1 else features
        records = frame.to_dict(orient="records")
        return [{str(k): _missing_to_none(v) for k, v in record.items()} for record in records]
    if module == "numpy" and hasattr(features, "tolist"):
        return features.tolist()
    return features


def _missing_to_none(value: Any) -> Any:
    value = _plain_scalar(value) if type(value).__module__.split(".")[0] == "numpy" else value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__module__.split(".")[0] == "pandas":  # pandas.NA, NaT
        return None
    return value


def _plain_scalar(value: Any) -> Any:
    """json.dumps fallback: numpy scalars and arrays nested in plain lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot send {type(value).__name__} as JSON: {value!r:.40}")


def _model(model: str | None, version: str | None) -> dict:
    """The request's model and version; the server's defaults where None."""
    return {key: value for key, value in (("model", model), ("version", version))
            if value is not None}


def _what_happened(error: requests.RequestException, timeout: Any, retries: int) -> str:
    """A short account of a failed call, without urllib3's object reprs."""
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    # after retries, requests wraps the last failure in a ConnectionError(MaxRetryError)
    cause = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(error, requests.ConnectTimeout):
        what = f"could not connect within {connect} s"
    elif isinstance(error, requests.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        what = f"no answer within {read} s"
    elif errno := re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error)):
        what = errno.group(1).strip().lower()
    elif "RemoteDisconnected" in str(error) or "aborted" in str(error):
        what = "the server closed the connection without answering"
    elif isinstance(error, requests.exceptions.ChunkedEncodingError):
        what = "the answer broke off before its end"
    else:
        what = type(error).__name__
    return f"{what} (after {retries} retries)" if retries else what


def _answer(response: requests.Response, call: str) -> dict:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if 200 <= status < 300:
        if isinstance(body, dict):
            return body
        raise ServerError(f"{call}: the answer is not a JSON object", status)
    message = body.get("error") if isinstance(body, dict) else None
    message = f"{call}: {status} {message or response.reason or ''}".strip()
    if status in (401, 403):
        raise Unauthorized(message, status)
    if status == 404:
        raise NotFound(message, status)
    if 400 <= status < 500:
        raise BadInput(message, status)
    if status in RETRY_STATUSES:
        raise Unavailable(message + " (still failing after retries)", status)
    if status >= 500:
        raise ServerError(message, status)
    raise ModelflyError(message, status)

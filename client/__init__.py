"""The modelfly Python client: `from client import ModelClient`. See model_client.py."""

from client.errors import BadInput, ModelflyError, NotFound, ServerError, Unauthorized, Unavailable
from client.job import Job
from client.model_client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, DEFAULT_URL, ModelClient

__all__ = ["ModelClient", "Job", "ModelflyError", "BadInput", "Unauthorized", "NotFound",
           "ServerError", "Unavailable", "DEFAULT_URL", "DEFAULT_TIMEOUT", "DEFAULT_RETRIES"]

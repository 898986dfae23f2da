"""What a browser gets: the model list (GET / with Accept: text/html), a model's page
(/ui/<name>), the API docs (/docs: Swagger UI from the pinned swagger-ui-py package) and their
scripts and styles, every one from this server: no CDN, no web font.

The pages are fixed shells: their scripts fetch the cards with the caller's token and build
every element with the DOM (text, never HTML), so no card string is ever parsed as markup, and
a page shows nothing of a model to whoever has no token. The policy below allows only this
server's own scripts and styles, and no inline script.
"""

import hashlib
import importlib.util
import string
from collections.abc import Callable
from pathlib import Path

from server.answers import Answer

STATIC = Path(__file__).resolve().parent / "static"
# The Swagger UI files /docs uses, from swagger-ui-py's copy of Swagger UI's dist folder.
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png"}


def swagger_dir() -> Path:
    """Where swagger-ui-py keeps Swagger UI's files, found without importing the package
    (which imports Jinja2 and its framework handlers)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (requirements.txt pins it)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class Pages:
    """The pages and their assets, read once; `model_names()` tells which /ui/<name> exist."""

    def __init__(self, model_names: Callable[[], list[str]], max_rows: int,
                 token_needed: bool) -> None:
        self.model_names = model_names
        shell = {"max_rows": str(max_rows), "auth": "token" if token_needed else "none"}
        self.files = {f"/static/{path.name}": self._file(path, shell)
                      for path in sorted(STATIC.iterdir())
                      if path.suffix in TYPES and path.suffix != ".html"}
        self.files.update({f"/docs/{name}": self._file(swagger_dir() / name, shell)
                           for name in SWAGGER_FILES})
        self.html = {name: self._file(STATIC / f"{name}.html", shell)
                     for name in ("index", "ui", "docs", "missing")}
        status, headers, body = self.html["index"]  # GET / is JSON or this page, by Accept
        self.html["index"] = status, [*headers, ("Vary", "Accept")], body

    def answer(self, path: str, environ: dict) -> Answer | None:
        """The page or asset at `path`, or None if `path` is none of them."""
        if path == "/":
            if "text/html" not in environ.get("HTTP_ACCEPT", ""):
                return None
            page = self.html["index"]
        elif path == "/docs":
            page = self.html["docs"]
        elif path.startswith("/ui/"):
            page = self.html["ui" if path[4:] in self.model_names() else "missing"]
        else:
            page = self.files.get(path)
            if page is None:
                return None
        status, headers, body = page
        if environ.get("HTTP_IF_NONE_MATCH") == dict(headers)["ETag"]:
            return 304, headers, b""
        return page

    @staticmethod
    def route(path: str) -> str | None:
        """The metrics' route label of a page path: a few fixed ones, whatever the path."""
        if path == "/docs":
            return path
        for prefix in ("/ui/", "/static/", "/docs/"):
            if path.startswith(prefix):
                return prefix.rstrip("/")
        return None

    @staticmethod
    def _file(path: Path, shell: dict[str, str]) -> Answer:
        body = path.read_bytes()
        if path.suffix == ".html":
            body = string.Template(body.decode()).substitute(shell).encode()
        headers = [("Content-Type", TYPES[path.suffix]), ("Cache-Control", "no-cache"),
                   ("ETag", '"' + hashlib.sha256(body).hexdigest()[:32] + '"')]
        if path.suffix == ".html":
            headers += [("Content-Security-Policy", POLICY), ("Referrer-Policy", "no-referrer")]
        return (404 if path.stem == "missing" else 200), headers, body

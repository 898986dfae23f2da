"""The pages over HTTP: who gets HTML and who JSON, the security headers, no token for the
pages but for what they call, no asset from elsewhere, and no card string in any page."""

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import firefly
import pytest
import requests
from helpers import GOOD_ROW, Server, serve_models

from client import ModelClient
from predict import predict
from server.pages import STATIC, SWAGGER_FILES, swagger_dir

TOKEN = "pages-test-token"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGES = ("/", "/ui/iris", "/ui/xss", "/docs")


@pytest.fixture(scope="module")
def server(tmp_path_factory, showcase) -> Iterator[Server]:
    server = serve_models(tmp_path_factory.mktemp("serve"), showcase, MODELFLY_TOKEN=TOKEN)
    yield server
    server.stop()


def get(server: Server, path: str, **headers: str) -> requests.Response:
    return requests.get(server.url + path, headers={**BROWSER, **headers}, timeout=10)


def test_browsers_get_the_page_and_api_callers_the_json_they_always_got(server):
    page = get(server, "/")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Vary"] == "Accept" and "<table id=\"models\"" in page.text
    api = requests.get(server.url + "/", timeout=10)  # requests sends Accept: */*
    assert api.status_code == 401  # like every call, it needs the token
    api = requests.get(server.url + "/", headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=10)
    assert api.headers["Vary"] == "Accept"
    assert api.json()["functions"]["predict"] == {"path": "/predict"}
    # and the clients that read it keep working
    remote = firefly.Client(server.url, auth_token=TOKEN)
    assert remote.predict(features=GOOD_ROW) == predict(GOOD_ROW)
    with ModelClient(server.url, token=TOKEN) as client:
        assert client.predict(GOOD_ROW) == predict(GOOD_ROW)


def test_every_page_and_asset_is_served_without_a_token_with_its_headers(server):
    assets = [f"/static/{path.name}" for path in STATIC.iterdir() if path.suffix != ".html"]
    assets += [f"/docs/{name}" for name in SWAGGER_FILES]
    for path in (*PAGES, *assets):
        answer = get(server, path)
        assert answer.status_code == 200, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Content-Type"] == {
            ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
            ".png": "image/png"}.get(Path(path).suffix, "text/html; charset=utf-8"), path
        if answer.headers["Content-Type"].startswith("text/html"):
            policy = answer.headers["Content-Security-Policy"]
            assert "script-src 'self';" in policy and "default-src 'none'" in policy
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        again = get(server, path, **{"If-None-Match": answer.headers["ETag"]})
        assert (again.status_code, again.content) == (304, b"")
    # nosniff on the JSON answers too
    assert requests.get(server.url + "/health", timeout=10).headers[
        "X-Content-Type-Options"] == "nosniff"
    # what the pages call needs the token
    for path in ("/openapi.json", "/metrics"):
        assert requests.get(server.url + path, timeout=10).status_code == 401
    assert requests.post(server.url + "/info", json={"model": "iris"},
                         timeout=10).status_code == 401


class Links(HTMLParser):
    """Every src and href of a page, and whether it has an inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline: list[str] = []
        self.tag = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tag = tag
        found = dict(attrs)
        self.links += [found[key] for key in ("src", "href") if found.get(key)]
        self.inline += [key for key in found if key.startswith("on") or key == "style"]

    def handle_data(self, data: str) -> None:
        if self.tag in ("script", "style") and data.strip():
            self.inline.append(self.tag)


def test_no_asset_from_elsewhere_no_inline_code_and_no_card_string_in_a_page(server):
    for path in PAGES:
        page = get(server, path).text
        parser = Links()
        parser.feed(page)
        assert parser.inline == [], path
        assert parser.links and all(link.startswith("/") and not link.startswith("//")
                                    for link in parser.links), (path, parser.links)
        # the shells carry no card data: a card's strings reach the page only as DOM text
        assert "onerror" not in page and "setosa" not in page and "sepal" not in page
    for script in STATIC.glob("*.js"):
        code = script.read_text()
        assert "innerHTML" not in code and "insertAdjacentHTML" not in code, script.name
        assert not re.search(r"https?://", code), script.name
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", (STATIC / "modelfly.css").read_text())


def test_an_unknown_model_page_is_a_404_page_that_does_not_echo_the_name(server):
    answer = get(server, "/ui/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "No such model" in answer.text and "script>alert" not in answer.text
    assert get(server, "/static/../predict.py").status_code == 404
    assert get(server, "/docs/index.html").status_code == 404  # only the files /docs uses


def test_other_methods_on_a_page_are_405(server):
    answer = requests.post(server.url + "/docs", data=b"x", timeout=10)
    assert (answer.status_code, answer.headers["Allow"]) == (405, "GET")
    assert answer.json() == {"error": "/docs takes GET, received POST"}


def test_the_pinned_swagger_ui_is_where_the_pages_look_for_it():
    # the seam: swagger-ui-py's copy of Swagger UI's dist folder, at its pinned version
    for name in SWAGGER_FILES:
        assert (swagger_dir() / name).stat().st_size > 0
    assert '"5.24.2"' in (swagger_dir() / "swagger-ui-bundle.js").read_text()

"""The pages in a real browser: Debian's Chromium and ChromeDriver (installed by .ci/run),
driven by selenium, against the production server on loopback.

Screenshots of every form land in each test's temporary directory (pytest prints where with
-v --basetemp, or look under /tmp/pytest-of-<user>/).
"""

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy
import pandas
import pytest
from helpers import XSS, XSS_CLASS, Server, Worker, serve_models
from palmerpenguins import load_penguins
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from modelfly.features import to_rows
from modelfly.registry import Registry
from modelfly.settings import Settings

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "browser-test-token"
MAX_ROWS = 400  # so that a CSV file of 1,032 rows goes in three requests
SHIPPED = ("iris", "penguins", "diabetes")


@pytest.fixture(scope="module")
def in_process(showcase) -> Registry:
    """The same models in this process: the answers the pages must show."""
    return Registry(Settings(models_dir=showcase))


def serve(tmp_path_factory, showcase: Path, **env: str) -> Server:
    return serve_models(tmp_path_factory.mktemp("serve"), showcase,
                        MODELFLY_MAX_ROWS=str(MAX_ROWS), **env)


@pytest.fixture(scope="module")
def server(tmp_path_factory, showcase) -> Iterator[Server]:
    """The server, and a worker for its jobs."""
    data = tmp_path_factory.mktemp("jobs")
    env = {"MODELFLY_DATA_DIR": str(data), "MODELFLY_MODELS_DIR": str(showcase)}
    server = serve(tmp_path_factory, showcase, **env)
    worker = Worker(env, data / "worker.log")
    yield server
    server.stop()
    assert worker.stop() == 0


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[WebDriver]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert Path(program).exists(), f"{program} is missing: .ci/run installs it (apt)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root, headless, and with nothing that reaches out to the (closed) network.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: WebDriver, server: Server) -> Iterator[Callable[[str], WebDriver]]:
    """Opens a path of `server`; after the test, the console must hold no error (a CSP
    violation, a failed asset or a script error is one)."""
    browser.set_window_size(1200, 900)

    def open_page(path: str, base: str = server.url) -> WebDriver:
        browser.get(base + path)
        return browser

    yield open_page
    # Chrome logs each 4xx answer to fetch as an error: those the tests ask for are not.
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE"
              and "the server responded with a status of 4" not in entry["message"]]
    browser.execute_script("sessionStorage.clear()")
    assert errors == []


def expected(models: Registry, name: str, features, version: str | None = None) -> dict:
    """The in-process answer for `features` (any contract shape)."""
    return models.get(name, version).answer(to_rows(features, models.card(name, version),
                                                    max_rows=10_000))


def wait(browser: WebDriver, condition: Callable[[WebDriver], object], seconds: float = 15):
    # an element found as the page replaces it (the bars of a new answer) is looked up again
    return WebDriverWait(browser, seconds,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def form_of(browser: WebDriver) -> WebElement:
    return wait(browser, lambda d: (form := d.find_element(By.ID, "predict-form")).is_displayed()
                and form)


def fill(browser: WebDriver, card: dict, features: list | dict) -> None:
    """Types a row or record into the form as a person would."""
    for index, feature in enumerate(card["features"]):
        value = features[index] if isinstance(features, list) else features[feature["name"]]
        field = browser.find_element(By.NAME, feature["name"])
        assert browser.find_element(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']"
                                    ).text == feature["name"]
        if feature["type"] == "category":
            Select(field).select_by_value("" if value is None else value)
            continue
        if value is None:
            browser.find_element(By.ID, f"{field.get_attribute('id')}-missing").click()
            continue
        field.clear()
        field.send_keys(str(value))


def answer_shown(browser: WebDriver) -> str:
    return wait(browser, lambda d: (text := d.find_element(By.ID, "result").text) not in ("", "…")
                and text)


def assert_shows(browser: WebDriver, want: dict) -> None:
    """#result shows the prediction and the bars each class's probability, as in process."""
    shown = answer_shown(browser)
    prediction = want["predictions"][0]
    if isinstance(prediction, float):
        assert math.isclose(float(shown), prediction, rel_tol=1e-9)
    else:
        assert shown == str(prediction)
    bars = browser.find_elements(By.CSS_SELECTOR, "#probabilities meter")
    expected = want.get("probabilities", [{}])[0]
    assert [bar.get_attribute("aria-label") for bar in bars] == list(expected)
    for bar, probability in zip(bars, expected.values(), strict=True):
        assert math.isclose(float(bar.get_attribute("value")), probability, abs_tol=1e-9)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_answers_in_its_page_as_in_process(page, in_process, name,
                                                              tmp_path):
    browser = page(f"/ui/{name}")
    form_of(browser)
    card = in_process.card(name)
    features = card["golden"][1]["features"]
    fill(browser, card, features)
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    assert_shows(browser, expected(in_process, name, features))
    assert browser.find_element(By.ID, "error").is_displayed() is False
    browser.save_screenshot(str(tmp_path / f"{name}.png"))


def test_a_refused_value_shows_the_servers_message_and_marks_its_field(page, in_process,
                                                                      tmp_path):
    browser = page("/ui/iris")
    form_of(browser)
    fill(browser, in_process.card("iris"), [5.9, "wide", 5.1, 1.8])
    browser.find_element(By.NAME, "petal_width").send_keys(Keys.ENTER)  # Enter submits
    error = wait(browser, lambda d: (box := d.find_element(By.ID, "error")).is_displayed()
                 and box)
    assert error.text == ("row 0, column 'sepal_width': received \"wide\" (a string); "
                          "expected a finite number")
    marked = [field.get_attribute("name") for field in
              browser.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]")]
    assert marked == ["sepal_width"]
    assert browser.switch_to.active_element.get_attribute("name") == "sepal_width"
    assert browser.find_element(By.ID, "result").text == ""
    browser.save_screenshot(str(tmp_path / "iris-refused.png"))
    # corrected, the mark goes and the answer comes
    field = browser.find_element(By.NAME, "sepal_width")
    field.clear()
    field.send_keys("3.0", Keys.ENTER)
    assert_shows(browser, expected(in_process, "iris", [5.9, 3.0, 5.1, 1.8]))
    assert browser.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]") == []


def test_the_example_button_fills_in_the_golden_input(page, in_process):
    browser = page("/ui/penguins")
    form_of(browser)
    browser.find_element(By.ID, "example").click()
    golden = in_process.card("penguins")["golden"][0]
    for name, value in golden["features"].items():
        shown = browser.find_element(By.NAME, name).get_attribute("value")
        assert (shown == value) if isinstance(value, str) else (float(shown) == value)
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    assert_shows(browser, golden["expected"])


def test_a_csv_file_goes_in_batches_and_comes_back_as_a_download(page, in_process, downloads,
                                                                 tmp_path):
    frame = load_penguins().drop(columns=["species", "year"])
    frame = pandas.concat([frame] * 3, ignore_index=True)  # 1,032 rows, gaps included
    source = tmp_path / "penguins.csv"
    frame.to_csv(source, index=False)
    browser = page("/ui/penguins")
    link = upload(browser, source)
    progress = browser.find_element(By.ID, "csv-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(len(frame))
    assert browser.find_element(By.ID, "csv-status").text == "1032 of 1032 rows predicted."
    records = [{key: None if pandas.isna(value) else value for key, value in row.items()}
               for row in frame.to_dict("records")]
    assert_download(browser, link, downloads / "penguins-answers.csv",
                    expected(in_process, "penguins", records))


def upload(browser: WebDriver, source: Path) -> WebElement:
    """The CSV file sent from the page's batch part; its download link once answered."""
    form_of(browser)
    browser.find_element(By.ID, "csv-file").send_keys(str(source))
    browser.find_element(By.ID, "csv-run").click()
    return wait(browser, lambda d: (a := d.find_element(By.ID, "csv-download")).is_displayed()
                and a, seconds=60)


def assert_download(browser: WebDriver, link: WebElement, target: Path, want: dict) -> None:
    """The downloaded CSV holds the in-process answers, one line a row."""
    link.click()
    wait(browser, lambda d: target.exists() and target.stat().st_size > 0, seconds=30)
    with target.open() as answers:
        got = list(csv.DictReader(answers))
    assert [row["prediction"] for row in got] == want["predictions"]
    for row, probabilities in zip(got, want["probabilities"], strict=True):
        for label, probability in probabilities.items():
            assert math.isclose(float(row[f"p_{label}"]), probability, abs_tol=1e-12)
    target.unlink()


def test_a_large_csv_file_goes_as_a_job(page, in_process, downloads, tmp_path):
    rows = numpy.random.default_rng(7).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                               size=(6_000, 4)).round(2)
    source = tmp_path / "iris.csv"
    pandas.DataFrame(rows, columns=[f["name"] for f in in_process.card("iris")["features"]]
                     ).to_csv(source, index=False)
    browser = page("/ui/iris")
    link = upload(browser, source)
    assert browser.find_element(By.ID, "csv-status").text == \
        "Job succeeded: 6000 of 6000 rows predicted."
    assert_download(browser, link, downloads / "iris-answers.csv",
                    expected(in_process, "iris", rows.tolist()))


def test_card_strings_are_text_and_run_nothing(page, in_process, tmp_path):
    browser = page("/ui/xss")
    form_of(browser)
    options = [option.text for option in Select(browser.find_element(By.NAME, "colour")).options]
    assert XSS in options
    Select(browser.find_element(By.NAME, "colour")).select_by_visible_text(XSS)
    browser.find_element(By.NAME, "size").send_keys("3")
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    assert answer_shown(browser) == XSS_CLASS
    assert_shows(browser, expected(in_process, "xss", [XSS, 3.0]))
    browser.save_screenshot(str(tmp_path / "xss.png"))
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.TAG_NAME, "svg") == []
    assert browser.execute_script("return document.body.dataset.pwned") is None
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check


def test_a_text_model_has_a_textarea_and_a_version_choice(page, in_process, tmp_path):
    browser = page("/ui/reviews")
    form_of(browser)
    choice = Select(browser.find_element(By.ID, "version-choice"))
    assert [option.text for option in choice.options] == ["1.0.0", "2.0.0 (default)"]
    assert choice.first_selected_option.get_attribute("value") == "2.0.0"
    review = browser.find_element(By.NAME, "review")
    assert review.tag_name == "textarea"
    review.send_keys("loved it, a wonderful film")
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    assert_shows(browser, expected(in_process, "reviews", "loved it, a wonderful film",
                                   "2.0.0"))
    browser.save_screenshot(str(tmp_path / "reviews.png"))
    choice.select_by_value("1.0.0")
    wait(browser, lambda d: "version 1.0.0" in d.find_element(By.ID, "model-summary").text)
    review = browser.find_element(By.NAME, "review")
    assert review.get_attribute("value") == "loved it, a wonderful film"  # kept
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    one = expected(in_process, "reviews", "loved it, a wonderful film", "1.0.0")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#probabilities meter")
         .get_attribute("value") == str(one["probabilities"][0]["negative"]))
    assert_shows(browser, one)


def test_the_keyboard_alone_reaches_fills_and_submits_the_form(page, in_process):
    browser = page("/ui/iris")
    form_of(browser)
    keys = ActionChains(browser)
    for _ in range(12):  # from the top of the page: the header's links, then the first field
        keys.send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.get_attribute("name") == "sepal_length":
            break
    else:
        pytest.fail("Tab never reached the first field")
    for value in ("5.1", "3.5", "1.4", "0.2"):
        keys.send_keys(value, Keys.TAB).perform()
    assert browser.switch_to.active_element.text == "Predict"
    keys.send_keys(Keys.ENTER).perform()
    assert_shows(browser, expected(in_process, "iris", [5.1, 3.5, 1.4, 0.2]))
    keys.send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "example"


def test_the_pages_fit_a_phones_width(page, tmp_path):
    for path in ("/", "/ui/penguins"):
        browser = page(path)
        browser.set_window_size(390, 844)
        if path == "/":
            wait(browser, lambda d: d.find_element(By.ID, "models").is_displayed())
        else:
            form_of(browser)
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(tmp_path / f"phone-{path.strip('/').replace('/', '-')}.png"))
        browser.set_window_size(1200, 900)


def test_the_model_list_and_the_api_docs_work_offline(page, server, tmp_path):
    browser = page("/")
    table = wait(browser, lambda d: (t := d.find_element(By.ID, "models")).is_displayed() and t)
    links = {a.text: a.get_attribute("href") for a in table.find_elements(By.CSS_SELECTOR,
                                                                          "tbody a")}
    assert links == {name: f"{server.url}/ui/{name}"
                     for name in ("diabetes", "iris", "penguins", "reviews", "xss")}
    assert "1.0.0, 2.0.0 (default)" in table.text and "accuracy" in table.text
    browser.save_screenshot(str(tmp_path / "index.png"))
    browser.get(server.url + "/docs")
    wait(browser, lambda d: "modelfly" in d.find_element(By.CSS_SELECTOR,
                                                         ".swagger-ui .info .title").text)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/info", "/openapi.json", "/ui/{name}"} <= paths
    browser.save_screenshot(str(tmp_path / "docs.png"))
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) == {server.url}  # every asset and call: this server's own


@pytest.fixture(scope="module")
def token_server(tmp_path_factory, showcase) -> Iterator[Server]:
    server = serve(tmp_path_factory, showcase, MODELFLY_TOKEN=TOKEN)
    yield server
    server.stop()


def test_with_a_token_the_page_asks_once_and_keeps_it_out_of_urls(page, token_server,
                                                                  in_process):
    browser = page("/ui/iris", token_server.url)
    field = wait(browser, lambda d: (t := d.find_element(By.ID, "token")).is_displayed() and t)
    assert browser.switch_to.active_element == field
    field.send_keys("not-the-token", Keys.ENTER)
    wait(browser, lambda d: "not this server's" in d.find_element(By.ID, "token-message").text)
    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.ENTER)
    form_of(browser)
    fill(browser, in_process.card("iris"), [5.9, 3.0, 5.1, 1.8])
    browser.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()
    assert_shows(browser, expected(in_process, "iris", [5.9, 3.0, 5.1, 1.8]))
    browser.get(token_server.url + "/")  # another page of the same tab: not asked again
    wait(browser, lambda d: d.find_element(By.ID, "models").is_displayed())
    assert browser.find_elements(By.ID, "token") == []
    assert TOKEN not in browser.current_url
    browser.get(token_server.url + "/docs")  # Swagger UI fetches /openapi.json with it
    wait(browser, lambda d: "modelfly" in d.find_element(By.CSS_SELECTOR,
                                                         ".swagger-ui .info .title").text)
    assert browser.find_elements(By.ID, "token") == []
    assert browser.execute_script("return sessionStorage.getItem('modelfly-token')") == TOKEN
    assert TOKEN not in "".join(browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"))
    assert TOKEN not in token_server.log.read_text()  # sent as a header, never logged

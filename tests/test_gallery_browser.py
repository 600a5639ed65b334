"""The gallery in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven by selenium opens the pages of a running server, draws a digit on the canvas and types
text, and sees the answers. Screenshots go to a temporary folder, or with `--screenshots DIR` to DIR
(`--screenshots reports/gallery` refreshes the README's). Skipped where no browser is installed
(apt-get install chromium chromium-driver)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serving_helpers import RunningServer, drawn_digit
from zoo import api, registry
from zoo.serving import http as serving_http

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (extra `browser`)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium and chromedriver on PATH "
                                 "(apt-get install chromium chromium-driver)")]


@pytest.fixture(scope="module")
def served():
    running = RunningServer(serving_http.ModelServer({name: api.load(name) for name in ("cnn_mnist", "lstm_ptb")}))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def screenshots(request, tmp_path_factory) -> Path:
    """Where the screenshots go: a temporary folder unless --screenshots names one."""
    chosen = request.config.getoption("--screenshots")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1100", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_index_lists_every_model(served, browser, screenshots):
    browser.get(f"http://127.0.0.1:{served.port}/")
    rows = browser.find_elements(By.CSS_SELECTOR, "table tr")
    assert len(rows) == len(registry.list_models()) + 1
    assert "accuracy 0.9961" in browser.find_element(By.TAG_NAME, "table").text
    browser.save_screenshot(str(screenshots / "index.png"))


def test_drawing_a_digit_shows_the_class_and_probability_bars(served, browser, screenshots):
    browser.get(f"http://127.0.0.1:{served.port}/models/cnn_mnist")
    canvas = browser.find_element(By.ID, "canvas")
    assert browser.find_element(By.ID, "normalize").is_selected()  # on by default for MNIST models
    # A "1": one downward stroke through the canvas' middle (offsets from its centre).
    actions = ActionChains(browser).move_to_element_with_offset(canvas, 5, -95).click_and_hold()
    for _ in range(19):
        actions.move_by_offset(0, 10)
    actions.release().perform()
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "prediction").text != "-")
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "prediction").text.startswith("1 (")
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    assert len(bars) == 10 and bars[1].text.startswith("1")
    widths = [bar.find_element(By.CLASS_NAME, "bar").size["width"] for bar in bars]
    assert max(widths) == widths[1]
    browser.save_screenshot(str(screenshots / "cnn_mnist.png"))


def test_uploading_an_image_shows_its_class(served, browser, tmp_path):
    path = tmp_path / "seven.png"
    drawn_digit(7).save(path)  # 280x280 black on white: normalised on the server
    browser.get(f"http://127.0.0.1:{served.port}/models/cnn_mnist")
    browser.find_element(By.ID, "upload").send_keys(str(path))
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "prediction").text != "-")
    assert browser.find_element(By.ID, "prediction").text.startswith("7 (")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .bar-row")) == 10


def test_typing_text_shows_next_words_and_a_continuation(served, browser, screenshots):
    browser.get(f"http://127.0.0.1:{served.port}/models/lstm_ptb")
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("the company said")
    lm = served.server.models["lstm_ptb"]
    expected = [word for word, _ in lm.next_words("the company said", k=5)]
    # The list is re-rendered after each typed key: an item read mid-render is stale, so read again.
    WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda driver: [item.text.split()[0] for item in
                        driver.find_elements(By.CSS_SELECTOR, "#next-words li")] == expected)
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 60).until(lambda driver: driver.find_element(By.ID, "continuation").text != "")
    continuation = lm.generate("the company said", num_words=20, temperature=0.8, top_k=40, seed=0)
    assert browser.find_element(By.ID, "continuation").text == continuation.replace("\n", " / ")
    assert browser.find_element(By.ID, "error").text == ""
    browser.save_screenshot(str(screenshots / "lstm_ptb.png"))

"""The web console under test: a real headless Chromium (Debian's ``chromium``, driven by
its ``chromedriver`` through selenium) against the whole stack (PostgreSQL, the local
Kubernetes cluster with its real node, the operator and the API: :mod:`devcluster.stack`),
one stack for the package's tests.

``console`` is a :class:`Console` on a fresh browser profile at 1280 px; every wait in it
is bounded (WebDriverWait), and a failing wait says what it waited for and what the page
showed. Screenshots go to the test's own tmp folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from devcluster import examples, stack
from longtask.db import connect

ORG = examples.ORGANIZATION          # acme: the example forms and files
OTHER_ORG = "console-other"          # another tenant, with the same forms
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20.0                          # seconds for a page's own answer to show


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Stack]:
    """The whole stack, with acme's examples, and the same forms for another organization."""
    workdir = Path(tmp_path_factory.mktemp("stack"))
    running = stack.start(workdir, organizations=[ORG, OTHER_ORG], with_examples=True)
    try:
        conn = connect(running.db_url, application_name="longtask-console-tests")
        try:
            examples.load(conn, workdir / "other-examples", OTHER_ORG)
        finally:
            conn.close()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def example_files(live: stack.Stack) -> Path:
    """The example files of acme (``villages.csv``, ``households.csv``, ...)."""
    return live.workdir / "examples"


def bearer(live: stack.Stack, organization: str = ORG) -> httpx.Client:
    """An HTTP client of the API with that organization's operator token."""
    return httpx.Client(base_url=live.api_url, timeout=30,
                        headers={"Authorization": f"Bearer {live.tokens[organization]}"})


class Console:
    """The console in one browser: navigation, bounded waits and screenshots."""

    def __init__(self, driver: webdriver.Chrome, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots

    def open(self, route: str = "") -> None:
        self.driver.get(f"{self.base}/console/{route}")

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait(self, condition: Callable[[webdriver.Chrome], Any], what: str,
             timeout: float = WAIT) -> Any:
        """``condition`` until truthy, at most ``timeout`` seconds; else fail saying
        ``what`` was awaited and what the page's alert and main text were."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.25,
                                 ignored_exceptions=(StaleElementReferenceException,)
                                 ).until(condition)
        except TimeoutException:
            alert = self.driver.execute_script(
                "return document.querySelector('#alert')?.textContent || ''")
            main = self.driver.execute_script(
                "return document.querySelector('main')?.innerText.slice(0, 1500) || ''")
            pytest.fail(f"waited {timeout:.0f} s for {what}; alert: {alert!r}\npage: {main}")

    def visible(self, css: str, timeout: float = WAIT) -> WebElement:
        def shown(driver: webdriver.Chrome) -> WebElement | bool:
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else False
        element: WebElement = self.wait(shown, f"{css} to show", timeout)
        return element

    def text_in(self, css: str, text: str, timeout: float = WAIT) -> None:
        self.wait(lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, css)),
                  f"{text!r} in {css}", timeout)

    def phase(self, wanted: set[str], timeout: float) -> str:
        """Wait until the task page's phase is one of ``wanted``; returns it."""
        found: str = self.wait(
            lambda d: (d.find_element(By.ID, "task-phase").text
                       if d.find_elements(By.ID, "task-phase")
                       and d.find_element(By.ID, "task-phase").text in wanted else False),
            f"the task's phase to be one of {sorted(wanted)}", timeout)
        return found

    def sign_in(self, token: str) -> None:
        self.open()
        self.visible("#token").send_keys(token)
        self.find("#signin-form button[type=submit]").click()
        self.visible("#who")

    def fetch(self, path: str, method: str = "GET", headers: dict[str, str] | None = None,
              body: str | None = None) -> dict[str, Any]:
        """``fetch`` from the page (its cookie, same origin): ``{status, text, headers}``."""
        result: dict[str, Any] = self.driver.execute_async_script("""
            const [path, method, headers, body, done] = arguments;
            fetch(path, {method, headers, body, credentials: 'same-origin'})
              .then(async (r) => done({status: r.status, text: await r.text(),
                                       headers: Object.fromEntries(r.headers)}))
              .catch((e) => done({status: 0, text: String(e), headers: {}}));
        """, path, method, headers or {}, body)
        return result

    def shot(self, name: str, width: int = 1280) -> Path:
        """A screenshot of the whole page at ``width`` px into the test's folder."""
        self.driver.set_window_size(width, 900)
        self.driver.execute_script("window.scrollTo(0, 0)")
        height = int(self.driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, 700)"))
        self.driver.set_window_size(width, min(height + 120, 4000))
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot written to {path}"
        self.driver.set_window_size(1280, 900)
        return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a profile of the test's own, at 1280 x 900."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "chromium and chromium-driver are missing: make system-deps installs them")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking",
                     "--lang=en-GB", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(browser: webdriver.Chrome, live: stack.Stack, tmp_path: Path) -> Console:
    """The console of the live stack in a fresh browser."""
    return Console(browser, live.api_url, tmp_path)

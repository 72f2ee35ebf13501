"""The workbench as a person uses it, in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium; nothing is downloaded): log in, filter the queue,
open a fee mismatch and see its evidence, propose the adjusting entry, fail to approve it
as the same person, approve it as another; then, once the ledger and recon flows have run,
see the fee expense move in the ledger and the variance resolved. A screenshot of every
step is saved under the test's folder (or $CLEARLINE_TEST_ARTEFACTS when set)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from clearline.recon import PUBLISHED_VARIANCES
from tests.workbench.flows import moved, net_by_account, run_flows, variance
from tests.workbench.web import PASSWORD, Clock, serving

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="needs chromium and chromium-driver"),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


class Steps:
    """Screenshots numbered in the order the steps happen."""

    def __init__(self, driver, folder: Path) -> None:
        self.driver, self.folder, self.n = driver, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        self.n += 1
        assert self.driver.save_screenshot(str(self.folder / f"{self.n:02d}-{name}.png"))


def test_a_person_works_a_fee_mismatch_through_to_the_books(own_deployment, kafka_bootstrap, browser, tmp_path):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    dep, settings, root = own_deployment
    fee = pl.read_parquet(settings.recon_state / PUBLISHED_VARIANCES).filter(pl.col("category") == "fee_mismatch")
    vid = fee["variance_id"][0]
    artefacts = Path(os.environ.get("CLEARLINE_TEST_ARTEFACTS", tmp_path)) / "workbench-browser"
    steps = Steps(browser, artefacts)
    find = browser.find_element

    def click(element) -> None:
        """Click what loads a new page, and wait until the new one is complete. The old page
        is marked and the wait is for a complete page without the mark: Selenium's
        `staleness_of` asks the old page's node, and chromedriver can answer that with an
        "unknown error" (node does not belong to the document) mid-navigation, as CI saw."""
        browser.execute_script("window.clearlineOldPage = true")
        element.click()
        wait = WebDriverWait(browser, 120, ignored_exceptions=(WebDriverException,))  # an approval may wait
        wait.until(  # for Kafka (up to 30 s) before the page comes
            lambda d: d.execute_script("return !window.clearlineOldPage && document.readyState === 'complete'")
        )

    def log_in(name: str) -> None:
        browser.get(f"{base}/login")
        find(By.ID, "name").send_keys(name)
        find(By.ID, "password").send_keys(PASSWORD)
        click(find(By.ID, "login"))
        assert find(By.CSS_SELECTOR, "header .who").text.startswith(name)

    with serving(settings, Clock(), bootstrap=kafka_bootstrap) as base:
        log_in("pat")
        steps.shot("logged-in-queue")

        Select(find(By.ID, "f_category")).select_by_visible_text("fee_mismatch")
        click(find(By.ID, "apply"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#queue tr.row")
        assert [r.get_attribute("data-id") for r in rows] == fee["variance_id"].to_list()
        steps.shot("queue-filtered-fee-mismatch")

        click(find(By.LINK_TEXT, "fee_mismatch"))
        assert vid in browser.current_url
        assert "expected" in find(By.ID, "differs").text
        assert find(By.CSS_SELECTOR, "#files table.raw")  # the processor's raw line, field by field
        marked = browser.find_elements(By.CSS_SELECTOR, "#files table.raw tr.hl")  # the fee marked
        assert marked
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", marked[0])
        assert find(By.ID, "ledger").find_elements(By.CSS_SELECTOR, "table tr")
        steps.shot("fee-mismatch-evidence")

        account = find(By.NAME, "leg_account_0").get_attribute("value")
        minor = int(find(By.NAME, "leg_minor_0").get_attribute("value"))
        assert account.startswith("fee_expense:") and minor > 0
        before = net_by_account(settings.ledger_state, "fee_expense")
        click(find(By.ID, "propose"))
        assert "saved" in find(By.ID, "flash").text
        steps.shot("proposed")

        find(By.CSS_SELECTOR, ".approve_form input[name=note]").send_keys("looks right to me")
        click(find(By.CSS_SELECTOR, ".approve_form button.approve"))
        assert "another person must approve it" in find(By.ID, "flash").text
        steps.shot("same-person-refused")

        click(find(By.CSS_SELECTOR, "header form button"))  # log out
        log_in("tom")
        browser.get(f"{base}/variances/{vid}")
        find(By.CSS_SELECTOR, ".approve_form input[name=note]").send_keys("checked against the fee notice")
        click(find(By.CSS_SELECTOR, ".approve_form button.approve"))
        assert "Approved: adjustment.posted" in find(By.ID, "flash").text
        steps.shot("approved-by-another")

        run_flows(dep, settings, root)
        browser.get(f"{base}/variances/{vid}")
        assert find(By.ID, "status").text.startswith("resolved")
        steps.shot("resolved-after-the-flows")
    assert [abs(m) for m in moved(before, net_by_account(settings.ledger_state, "fee_expense")).values()] == [minor]
    assert variance(settings, vid)["status"] == "resolved"
    assert len(list(artefacts.glob("*.png"))) == 7
    print(f"[workbench browser] screenshots in {artefacts}")

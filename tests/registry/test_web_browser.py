"""The web pages in a real browser (Debian's headless Chromium through Selenium) over the
real server: list -> component -> group heatmap -> evaluation, checking what a person
sees. With ``PARTSBIN_SCREENSHOTS=1`` it writes one screenshot per page to docs/screenshots/
(shown in the README); otherwise into the test's temporary folder: a test run leaves the
repository as it was."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.registry.zoo import build_zoo

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def zoo(live, http, tmp_path):
    return build_zoo(http, live.token("admin"), tmp_path)


def _shoot(browser, name: str) -> None:
    """The whole page, beyond the window (Chrome DevTools' screenshot)."""
    import os
    import tempfile

    folder = DOCS_SCREENSHOTS if os.environ.get("PARTSBIN_SCREENSHOTS") == "1" else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG"), "a screenshot of the page"
    (folder / f"partsbin-{name}.png" if folder != DOCS_SCREENSHOTS else folder / f"{name}.png").write_bytes(png)


def _text(element) -> str:  # type: ignore[no-untyped-def]
    return element.get_attribute("textContent")


def test_list_component_group_heatmap_evaluation(browser, live, zoo):
    browser.delete_all_cookies()
    browser.get(live.url + "/")
    assert browser.title == "Components · partsbin"
    rows = browser.find_elements(By.CSS_SELECTOR, "#components tbody tr")
    assert len(rows) == 8
    row = next(r for r in rows if r.find_element(By.CSS_SELECTOR, "td a").text == "lab/a-extractor@1")
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1:5] == ["extractor", "resnet_cifar", f"{zoo.ext['a']['size'] / 1000:.1f} kB", "97.4%"]
    _shoot(browser, "components")

    # Search from the form, as a person would.
    box = browser.find_element(By.CSS_SELECTOR, "input[name=q]")
    box.send_keys("task b")
    box.submit()
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#components tbody td:first-child > a")] == [
        "lab/b-extractor@1",
        "lab/b-head@1",
    ]
    browser.get(live.url + "/")

    browser.find_element(By.LINK_TEXT, "lab/a-extractor@1").click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("lab/a-extractor @1")
    assert browser.find_element(By.ID, "description").text == "feature extractor of task a"
    assert browser.find_element(By.ID, "junction").text == "8 channels, spatial 8"
    assert 'registry.assemble("lab/a-extractor@1", "lab/a-head@1")' in browser.find_element(By.ID, "snippet-code").text
    compatible = browser.find_elements(By.CSS_SELECTOR, "#compatible tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in compatible] == [
        "lab/a-head@1",
        "lab/b-head@1",
        "lab/c-head@1",
        "lab/rp@1",
    ]
    assert compatible[1].find_elements(By.TAG_NAME, "td")[3].text == "71.0%"
    assert "measured: recombination accuracy 71.0% on 500 images" in compatible[1].text
    assert compatible[3].find_elements(By.TAG_NAME, "td")[2].text == "declared, unmeasured"
    came_from_it = browser.find_element(By.ID, "came-from-it").text
    assert "lab/a-adapted-extractor@1 (adapted from)" in came_from_it
    assert f"produced by job: job {zoo.job_id}" in browser.find_element(By.ID, "came-from").text
    assert browser.find_elements(By.CSS_SELECTOR, "#lineage svg.lineage a.node")
    _shoot(browser, "component")

    browser.find_element(By.CSS_SELECTOR, "#card a[href^='/ui/groups/']").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Group of lab/rp@1"
    pair = '[data-extractor="lab/a-extractor@1"][data-head="lab/b-head@1"]'
    # The page fetches its heatmap once shown (static/heatmap.js).
    cell = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"svg.heatmap a.cell{pair}"))
    )
    assert _text(cell.find_element(By.TAG_NAME, "text")) == "71"
    assert "71.0% on 500 images of digits-a:test" in _text(cell.find_element(By.TAG_NAME, "title"))
    empty = browser.find_element(
        By.CSS_SELECTOR, 'svg.heatmap g.cell.not-measured[data-extractor="lab/c-extractor@1"][data-head="lab/a-head@1"]'
    )
    assert _text(empty.find_element(By.TAG_NAME, "title")).endswith("not measured")
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.heatmap .cell")) == 12
    _shoot(browser, "group")

    cell.click()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Evaluation {zoo.evaluations[('a', 'b')]['id']}"
    table = browser.find_element(By.ID, "evaluation").text
    assert "digits-a:test" in table and "500 images" in table and "batch statistics" in table
    assert browser.find_element(By.ID, "ci95").text == "66.9% – 74.8% (Wilson score, 500 images)"
    _shoot(browser, "evaluation")

    browser.find_element(By.LINK_TEXT, "Jobs").click()
    job_row = browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr")
    assert "succeeded" in job_row.text and "lab/a-extractor@1" in job_row.text
    assert "gpu-box-1" in browser.find_element(By.ID, "workers").text
    _shoot(browser, "jobs")


def test_sign_in_with_a_token_when_anonymous_reads_are_off(browser, make_registry):
    live = make_registry(anonymous_read=False)
    token = live.token("read")
    browser.delete_all_cookies()
    browser.get(live.url + "/ui/jobs")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    assert "needs a token" in browser.find_element(By.ID, "message").text
    _shoot(browser, "sign-in")
    field = browser.find_element(By.ID, "token")
    field.send_keys("pb_not-a-token")
    field.submit()
    assert "unknown, revoked or expired" in browser.find_element(By.ID, "message").text
    field = browser.find_element(By.ID, "token")
    field.send_keys(token)
    field.submit()
    # Back where the reader was going, signed in; the cookie is out of scripts' reach.
    assert browser.current_url == live.url + "/ui/jobs"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Jobs"
    assert browser.execute_script("return document.cookie") == ""
    assert "(read)" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    browser.find_element(By.CSS_SELECTOR, "header .who button").click()
    browser.get(live.url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"


def test_a_namespace_owner_manages_webhooks_on_their_page(browser, make_registry):
    from tests.registry.test_webhooks import FAST, Receiver, _wait

    receiver = Receiver()
    receiver.start()
    live = make_registry(webhook_allow_private=True, **FAST)
    token = live.token("publish", ["lab"], owner=True)
    browser.delete_all_cookies()
    browser.get(live.url + "/ui/webhooks")
    assert "admins and namespace owners" in browser.find_element(By.ID, "message").text
    field = browser.find_element(By.ID, "token")
    field.send_keys(token)
    field.submit()
    assert browser.current_url == live.url + "/ui/webhooks"
    assert "No webhooks yet for lab" in browser.find_element(By.CSS_SELECTOR, "p.empty").text
    browser.find_element(By.ID, "url").send_keys(receiver.url)
    browser.find_element(By.CSS_SELECTOR, "input[value='component.published']").click()
    browser.find_element(By.ID, "description").send_keys("CI")
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, "#add-webhook button[type=submit]").click()
    secret = WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "secret"))).text
    assert len(secret) >= 32
    try:
        ping = receiver.wait_for("ping")
    finally:
        receiver.stop()
    from partsbin import verify_signature

    assert verify_signature(secret, ping["body"], ping["headers"]["x-partsbin-signature-256"])

    def delivered() -> bool:
        browser.get(live.url + "/ui/webhooks")
        return "succeeded" in _text(browser.find_element(By.CSS_SELECTOR, "table.deliveries"))

    _wait(delivered)
    section = browser.find_element(By.CSS_SELECTOR, "section.webhook")
    assert receiver.url in section.text and "component.published" in section.text and "CI" in section.text
    _shoot(browser, "webhooks")
    # Each button posts a form and the page comes back: wait for the old page to go.
    section.find_element(By.XPATH, ".//button[text()='Pause']").click()
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(section))
    section = browser.find_element(By.CSS_SELECTOR, "section.webhook")
    assert "paused" in section.find_element(By.TAG_NAME, "h2").text
    section.find_element(By.XPATH, ".//button[text()='Delete']").click()
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(section))
    assert browser.find_elements(By.CSS_SELECTOR, "section.webhook") == []

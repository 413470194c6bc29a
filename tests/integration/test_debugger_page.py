"""The event debugger page in a real headless Chromium, during a real run.

The worker runs as users run it (``signal-sync worker -c FILE``) against the real broker and
both sandbox emulators; events that end delivered, dropped and failed are produced, and the
page at ``/debugger`` is driven with selenium through Debian's chromium and chromedriver
(``dev/install_browser.sh`` installs them). Without them the test is skipped, or fails when
``CI=true``, so a CI box that lost its browser does not pass silently.

The debugger is off unless configured, so each test turns it on: the first behind a bearer
token (the page asks for it; a wrong one is refused; the URL fragment ``#token=`` works) with
personal data masked, the second loopback-only with ``show_personal_data: true``.

A screenshot of the page is saved to ``test-output/debugger.png`` (plus one per filter).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from harness import produce

from signal_sync.destinations import mailgun
from signal_sync.sandbox.server import RunningServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "test-output"
# Debian's packages (dev/install_browser.sh); overridable for machines that keep them elsewhere.
CHROMIUM = Path(os.environ.get("SIGNAL_SYNC_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SIGNAL_SYNC_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1500,1100",
)
SECRETS = ("sandbox-password", "key-sandbox")
TOKEN = "dbg-token-7c1e0a9b55d24f1e"
VISITOR_IP = "203.0.113.7"
FIRST_NAME, LAST_NAME = "Alicia", "Liddellsen"


def _is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _missing_browser() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (run: bash dev/install_browser.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian chromium through chromedriver, with a fresh empty profile."""
    reason = _missing_browser()
    if reason:
        if _is_ci():
            pytest.fail(f"no browser for the debugger page test: {reason}", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --- helpers ---------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], Any], timeout: float, check: Callable[[], None]) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        check()
        try:
            last = probe()
        except Exception as exc:  # page re-rendered under us (stale element) etc.: poll again
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:  # loopback worker
        return json.loads(reply.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as reply:  # loopback emulator
        return json.loads(reply.read())


@contextlib.contextmanager
def answering(status: int, *sandboxes: RunningServer) -> Iterator[None]:
    """Every request to ``sandboxes`` is answered with ``status`` inside the block."""
    for sandbox in sandboxes:
        post_json(f"{sandbox.url}/_sandbox/faults", {"force_status": status})
    try:
        yield
    finally:
        for sandbox in sandboxes:
            post_json(f"{sandbox.url}/_sandbox/faults", {})


def api_outcomes(base: str, token: str | None = TOKEN) -> list[dict[str, Any]]:
    try:
        return get_json(f"{base}/debugger/api/outcomes", token)["outcomes"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return []


def cid(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def event(
    kind: str, anonymous_id: str, step: int, consent: bool, page_url: str | None = None, **fields: Any
) -> tuple[bytes, bytes]:
    """One SDK-shaped event, keyed by its anonymous id like a browser SDK's."""
    context: dict[str, Any] = {"ip": VISITOR_IP, "consent": {"canonical": {"marketing": consent}}}
    if page_url:
        context["page"] = {"url": page_url}
    body: dict[str, Any] = {
        "type": kind,
        "messageId": f"dbg-{uuid.uuid4().hex[:12]}",
        "anonymousId": anonymous_id,
        "timestamp": f"2026-06-06T12:00:{step:02d}Z",
        "context": context,
        **fields,
    }
    return anonymous_id.encode(), orjson.dumps(body)


def rows(driver: Any) -> list[dict[str, str]]:
    """The outcome rows the page shows now, as dicts (one script call: no stale elements)."""
    return driver.execute_script(
        """
        return Array.from(document.querySelectorAll('#outcome-rows tr.outcome')).map(function (tr) {
          var text = function (cls) { var c = tr.querySelector('.' + cls); return c ? c.textContent : null; };
          return {seq: tr.dataset.seq, status: tr.dataset.status, integration: tr.dataset.integration,
                  contact: tr.dataset.contact, event: text('col-event'), http: text('col-http'),
                  created: text('col-created'), reason: text('col-reason'), attempts: text('col-attempts')};
        });
        """
    )


def screenshot(driver: Any, name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / name
    driver.execute_script("window.scrollTo(0, 0);")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1500, max(900, min(int(height) + 40, 4000)))
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


def unlock_state(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        """
        var form = document.getElementById('auth');
        return {locked: !form.hidden, note: document.getElementById('auth-note').textContent,
                live: document.getElementById('live-status').textContent,
                privacy: document.getElementById('privacy').textContent};
        """
    )


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("worker_overrides", [{"debugger": {"enabled": True, "token": TOKEN}}])
def test_debugger_page_shows_live_outcomes_and_filters_them(
    browser, worker_config, worker, sandboxes, kafka_bootstrap, pipeline_topics
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    crm, mg = sandboxes
    port = yaml.safe_load(worker_config.read_text(encoding="utf-8"))["worker"]["web_port"]
    base = f"http://127.0.0.1:{port}"
    check = worker.assert_alive

    alice, bob, carol, dave = "Alice@Example.com ", "bob@example.com", "carol@example.com", "dave@example.com"
    phase_one = [
        event(
            "identify",
            "anon-alice",
            1,
            True,
            userId="u-alice",
            traits={"email": alice, "firstName": FIRST_NAME, "lastName": LAST_NAME},
        ),
        event("page", "anon-alice", 2, True, page_url="https://www.example.com/pricing"),
        event("identify", "anon-bob", 3, False, userId="u-bob", traits={"email": bob}),
    ]

    # With a token configured the API refuses requests without it, loopback ones included.
    wait_for("the worker's web server", lambda: get_json(f"{base}/debugger/api/outcomes", TOKEN), 120, check)
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{base}/debugger/api/outcomes")
    assert refused.value.code == 401

    # The page loads (it holds no data), asks for the token and refuses a wrong one.
    browser.get(f"{base}/debugger")
    assert browser.title.startswith("Event debugger")
    wait_for("the token form", lambda: unlock_state(browser)["locked"], 20, check)
    assert unlock_state(browser)["live"] == "Token needed"
    assert not rows(browser)
    browser.find_element(By.ID, "auth-token").send_keys("not-the-token-0000")
    browser.find_element(By.ID, "auth-submit").click()
    wait_for("the wrong token refused", lambda: "not accepted" in unlock_state(browser)["note"], 20, check)
    screenshot(browser, "debugger-token.png")
    browser.find_element(By.ID, "auth-token").send_keys(TOKEN)
    browser.find_element(By.ID, "auth-submit").click()
    wait_for("the page to poll", lambda: browser.find_element(By.ID, "live-status").text == "Live", 20, check)
    assert not unlock_state(browser)["locked"]
    assert unlock_state(browser)["privacy"] == "Personal data masked"
    assert "No outcomes yet" in browser.find_element(By.ID, "empty").text

    # The token can also come in the URL fragment, which the page takes out of the address bar.
    browser.execute_script("window.sessionStorage.clear();")
    browser.get("about:blank")
    browser.get(f"{base}/debugger#token={TOKEN}")
    wait_for("the page to poll", lambda: browser.find_element(By.ID, "live-status").text == "Live", 20, check)
    assert "token" not in browser.current_url
    # The refused requests are the only errors the browser logged so far.
    logged = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert all("401 (Unauthorized)" in e["message"] for e in logged if e.get("level") == "SEVERE"), logged

    # The pure-JS SHA-256 (used where crypto.subtle is unavailable) agrees with Python's.
    for sample in ("alice@example.com", "", "x" * 200):
        js = browser.execute_script(
            "return window.signalSyncDebugger.sha256Fallback(new TextEncoder().encode(arguments[0]));", sample
        )
        assert js == hashlib.sha256(sample.encode()).hexdigest()

    produce(kafka_bootstrap, pipeline_topics["source"], phase_one)
    # Phase one gives 6 outcomes: alice 4 delivered, bob 2 dropped (no consent).
    wait_for("phase one's 6 outcomes in the API", lambda: len(api_outcomes(base)) >= 6, 120, check)

    # Phase two: both destinations answer 400 for a while, so carol's deliveries fail.
    with answering(400, crm, mg):
        produce(
            kafka_bootstrap,
            pipeline_topics["source"],
            [event("identify", "anon-carol", 4, True, userId="u-carol", traits={"email": carol})],
        )
        wait_for("carol's 2 outcomes", lambda: len(api_outcomes(base)) >= 8, 120, check)

    # Phase three: Mailgun answers 400 for a while, so dave's Mailgun delivery fails.
    with answering(400, mg):
        produce(
            kafka_bootstrap,
            pipeline_topics["source"],
            [event("identify", "anon-dave", 5, True, userId="u-dave", traits={"email": dave})],
        )
        wait_for("dave's 2 outcomes", lambda: len(api_outcomes(base)) >= 10, 120, check)

    # The live page caught up without a reload.
    shown = wait_for("10 rows on the page", lambda: (r := rows(browser)) and len(r) == 10 and r, 20, check)
    by = {(r["contact"], r["integration"], r["event"]): r for r in shown}
    created = by[(cid(alice), "mautic-main", "Identified")]
    assert (created["status"], created["http"], created["created"]) == ("delivered", "201", "created")
    assert created["attempts"] == "1"
    updated = by[(cid(alice), "mautic-main", "page")]
    # Alone it is a 200 update; coalesced into the identify's upsert it shares that call's 201.
    assert (updated["status"], updated["created"]) == ("delivered", "updated") and updated["http"] in (
        "200",
        "201",
    )
    assert {r["status"] for r in shown} == {"delivered", "dropped", "failed"}
    assert by[(cid(bob), "mautic-main", "Identified")]["reason"] == "consent_denied"
    assert by[(cid(dave), "mautic-main", "Identified")]["status"] == "delivered"
    assert by[(cid(dave), "mailgun-news", "Identified")]["http"] == "400"
    assert [int(r["seq"]) for r in shown] == sorted((int(r["seq"]) for r in shown), reverse=True)
    summary = browser.find_element(By.ID, "summary").text
    assert "mautic-main" in summary and "mailgun-news" in summary

    # Status filter: only failed rows remain, and their details show the hint and the request.
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    failed = wait_for(
        "only the 3 failed rows",
        lambda: (r := rows(browser)) and len(r) == 3 and all(x["status"] == "failed" for x in r) and r,
        20,
        check,
    )
    assert {(r["contact"], r["integration"]) for r in failed} == {
        (cid(carol), "mautic-main"),
        (cid(carol), "mailgun-news"),
        (cid(dave), "mailgun-news"),
    }
    browser.find_element(By.ID, "pause").click()  # hold the rows still while opening them
    assert browser.find_element(By.ID, "live-status").text == "Paused"
    closed = "#outcome-rows tr.outcome button.toggle[aria-expanded='false']"
    for _ in range(3):  # each click re-renders the rows, so find the next one afresh
        browser.find_element(By.CSS_SELECTOR, closed).click()
    details = wait_for(
        "3 open detail rows",
        lambda: (
            (d := browser.find_elements(By.CSS_SELECTOR, "#outcome-rows tr.detail")) and len(d) == 3 and d
        ),
        10,
        check,
    )
    texts = [d.text for d in details]
    assert sum(mailgun.HINTS[400] in text for text in texts) == 2, texts
    assert all("Hint" in text and "Basic <redacted>" in text for text in texts), texts
    assert any("HTTP" in text or "Error" in text for text in texts), "the destinations' errors are shown"
    screenshot(browser, "debugger-failed.png")
    browser.find_element(By.ID, "pause").click()  # resume live updates

    # Contact filter: an email typed with odd case and spaces is hashed in the browser.
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    contact_box = browser.find_element(By.ID, "filter-contact")
    contact_box.send_keys("  ALICE@example.COM ")
    mine = wait_for(
        "only alice's 4 rows",
        lambda: (r := rows(browser)) and len(r) == 4 and all(x["contact"] == cid(alice) for x in r) and r,
        20,
        check,
    )
    assert {r["status"] for r in mine} == {"delivered"}
    assert cid(alice)[:16] in browser.find_element(By.ID, "contact-note").text
    screenshot(browser, "debugger-contact.png")

    # Clearing the filters brings every row back.
    browser.find_element(By.ID, "clear-filters").click()
    wait_for("all 10 rows again", lambda: len(rows(browser)) == 10, 20, check)
    assert browser.find_element(By.ID, "filter-contact").get_attribute("value") == ""

    # A fresh load (nothing expanded) with dave's forced Mailgun failure opened: the main screenshot.
    browser.refresh()
    wait_for("10 rows after a reload", lambda: len(rows(browser)) == 10, 20, check)
    assert not browser.find_elements(By.CSS_SELECTOR, "tr.detail")
    table_text = browser.find_element(By.ID, "outcomes").text
    browser.find_element(
        By.CSS_SELECTOR, f"#outcome-rows tr.outcome[data-status='failed'][data-contact='{cid(dave)}'] .toggle"
    ).click()
    opened = wait_for(
        "dave's open failure", lambda: browser.find_elements(By.CSS_SELECTOR, "tr.detail"), 10, check
    )
    assert len(opened) == 1 and mailgun.HINTS[400] in opened[0].text
    assert "<email redacted>" in opened[0].text, "dave's address is masked in the Mailgun form"
    path = screenshot(browser, "debugger.png")
    assert path.stat().st_size > 10_000

    # Alice's Mautic upsert: her names and the visitor IP are masked by field name.
    browser.find_element(
        By.CSS_SELECTOR,
        f"#outcome-rows tr.outcome[data-integration='mautic-main'][data-contact='{cid(alice)}'] .toggle",
    ).click()
    alice_detail = wait_for(
        "alice's open upsert",
        lambda: [d for d in browser.find_elements(By.CSS_SELECTOR, "tr.detail") if "firstname" in d.text],
        10,
        check,
    )[0].text
    assert '"firstname": "<personal data redacted>"' in alice_detail, alice_detail
    assert '"ipAddress": "<personal data redacted>"' in alice_detail
    assert '"X-Forwarded-For": "<personal data redacted>"' in alice_detail

    # Never a secret on the page; no personal data either (show_personal_data is off).
    page = browser.page_source + browser.find_element(By.TAG_NAME, "body").text
    for secret in (*SECRETS, TOKEN):
        assert secret not in page
    for email in (alice.strip().lower(), bob, dave):
        assert email not in table_text.lower() and email not in page.lower()
    for personal in (FIRST_NAME, LAST_NAME, VISITOR_IP):
        assert personal not in page
    logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs


@pytest.mark.parametrize("worker_overrides", [{"debugger": {"enabled": True, "show_personal_data": True}}])
def test_debugger_page_shows_personal_data_when_configured(
    browser, worker_config, worker, sandboxes, kafka_bootstrap, pipeline_topics
):
    """Loopback-only (no token): the page needs nothing to unlock; with show_personal_data the
    request is shown as sent, names, email and visitor IP included."""
    from selenium.webdriver.common.by import By

    port = yaml.safe_load(worker_config.read_text(encoding="utf-8"))["worker"]["web_port"]
    base = f"http://127.0.0.1:{port}"
    check = worker.assert_alive
    email = "erin.example@example.com"
    wait_for("the worker's web server", lambda: get_json(f"{base}/debugger/api/outcomes"), 120, check)
    produce(
        kafka_bootstrap,
        pipeline_topics["source"],
        [
            event(
                "identify",
                "anon-erin",
                1,
                True,
                userId="u-erin",
                traits={"email": email, "firstName": FIRST_NAME, "lastName": LAST_NAME},
            )
        ],
    )
    wait_for("erin's 2 outcomes", lambda: len(api_outcomes(base, None)) >= 2, 120, check)

    browser.get(f"{base}/debugger")
    wait_for("the page to poll", lambda: browser.find_element(By.ID, "live-status").text == "Live", 20, check)
    assert not unlock_state(browser)["locked"], "loopback needs no token"
    assert unlock_state(browser)["privacy"] == "Personal data shown"
    wait_for("2 rows", lambda: len(rows(browser)) == 2, 20, check)
    browser.find_element(
        By.CSS_SELECTOR, "#outcome-rows tr.outcome[data-integration='mautic-main'] .toggle"
    ).click()
    detail = wait_for(
        "the open upsert", lambda: browser.find_elements(By.CSS_SELECTOR, "tr.detail"), 10, check
    )
    text = detail[0].text
    for personal in (f'"firstname": "{FIRST_NAME}"', f'"lastname": "{LAST_NAME}"', VISITOR_IP, email):
        assert personal in text, (personal, text)
    screenshot(browser, "debugger-personal-data.png")
    page = browser.page_source
    for secret in SECRETS:
        assert secret not in page

"""The real worker delivering to a Mautic that only takes OAuth2 (HTTP Basic auth disabled), on the
real broker.

Events are delivered with bearer tokens from one token request; every token expired mid-stream
(the sandbox's expire control) is fetched again once and no event fails; a wrong client secret
pauses the integration with the wrong-client hint (no Mautic outcome, nothing dead-lettered) and
it resumes by itself once the credential is right, delivering what it held.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from harness import WorkerProcess, consume_until, produce

from signal_sync.destinations.mautic_auth import HINT_INVALID_CLIENT
from signal_sync.sandbox import mailgun, mautic, start_in_thread
from signal_sync.sandbox.mautic_oauth import MAUTIC_TOKENS, OAuthClient
from signal_sync.sandbox.server import RunningServer
from tests.support.config import write_config

pytestmark = pytest.mark.integration

T = TypeVar("T")
CLIENT_ID = "9_4e1yq0wz7xkwc8c0wgskg4kgo4sc0os08w4ckgw44oskgk0so8"
CLIENT_SECRET = "5kq1rl0ytq0wcoc0c0sk0gwkcgcs4kw4ckg8o8"


@pytest.fixture
def server_secret() -> str:
    """The secret Mautic holds for the client (a test changes it to make the worker's wrong)."""
    return CLIENT_SECRET


@pytest.fixture
def sandboxes(server_secret: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    """A Mautic with Basic auth disabled and one OAuth2 client; the usual Mailgun."""
    app = mautic.create_app(
        username="signal",
        password="sandbox-password",
        basic_auth_enabled=False,
        oauth_clients=[OAuthClient(CLIENT_ID, server_secret)],
    )
    with start_in_thread(app) as crm, start_in_thread(mailgun.create_app(api_key="key-sandbox")) as mg:
        yield crm, mg


@pytest.fixture
def worker(tmp_path: Path, kafka_bootstrap: str, pipeline_topics, sandboxes) -> Iterator[WorkerProcess]:
    crm, mg = sandboxes
    path = write_config(
        tmp_path / "config.yaml", kafka_bootstrap, pipeline_topics, crm.url, mg.url, tmp_path / "state"
    )
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    secret = tmp_path / "mautic-client-secret"
    secret.write_text(CLIENT_SECRET, encoding="utf-8")
    mautic_config = config["integrations"][0]
    del mautic_config["api_user"], mautic_config["api_password"]
    mautic_config["auth"] = {"type": "oauth2", "client_id": CLIENT_ID, "client_secret_file": str(secret)}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    process = WorkerProcess(path, tmp_path / "worker.log").start()
    process.web = f"http://127.0.0.1:{config['worker']['web_port']}"  # type: ignore[attr-defined]
    yield process
    code = process.stop()
    log = process.log_tail(40)
    print(f"worker exit code {code}; log tail:\n{log}")
    assert CLIENT_SECRET not in (tmp_path / "worker.log").read_text(encoding="utf-8", errors="replace")


def event(n: int, prefix: str) -> tuple[bytes, bytes]:
    anonymous_id = f"anon-{prefix}-{n}"
    value = {
        "type": "identify",
        "messageId": f"{prefix}-{n}",
        "anonymousId": anonymous_id,
        "timestamp": "2026-06-06T14:40:00Z",
        "traits": {"email": f"{prefix}{n}@example.com", "first_name": "Oauth", "last_name": f"Person{n}"},
        "context": {"consent": {"canonical": {"marketing": True}}},
    }
    return anonymous_id.encode(), json.dumps(value).encode()


def get_json(url: str) -> tuple[int, Any]:
    """Status and JSON body; status 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:  # loopback worker or emulator
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def post(url: str) -> None:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # loopback emulator
        assert reply.status == 200


def poll(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float, check: Callable[[], None]) -> T:
    """Call ``fetch`` until ``ok(value)`` or the deadline; returns the last value either way."""
    deadline = time.monotonic() + timeout
    value = fetch()
    while not ok(value) and time.monotonic() < deadline:
        check()
        time.sleep(0.25)
        value = fetch()
    return value


def outcomes_of(bootstrap: str, topic: str, count: int, check: Callable[[], None]) -> list[dict[str, Any]]:
    got = consume_until(bootstrap, topic, lambda records: len(records) >= count, 120, check)
    assert len(got) == count, f"{len(got)} of {count} outcomes"
    return got


def api_calls(crm: RunningServer) -> list[dict[str, Any]]:
    return get_json(crm.url + "/_sandbox/requests")[1]["requests"]


def test_bearer_tokens_and_one_refetch_after_they_expire(kafka_bootstrap, pipeline_topics, sandboxes, worker):
    crm, _mg = sandboxes
    source, deliveries = pipeline_topics["source"], pipeline_topics["deliveries"]
    produce(kafka_bootstrap, source, [event(n, "first") for n in range(20)])
    outcomes = outcomes_of(kafka_bootstrap, deliveries, 40, worker.assert_alive)
    assert {(o["integration"], o["status"]) for o in outcomes} == {
        ("mautic-main", "delivered"),
        ("mailgun-news", "delivered"),
    }
    assert get_json(crm.url + "/_sandbox/oauth")[1]["issued"] == 1
    calls = api_calls(crm)
    tokens = [c for c in calls if c["path"] == "/oauth/v2/token"]
    assert len(tokens) == 1 and tokens[0]["authorization"] is None and tokens[0]["status"] == 200
    assert tokens[0]["body"]["client_secret"] == "<redacted>" and "scope" not in tokens[0]["body"]
    assert {c["authorization"] for c in calls if c["path"].startswith("/api/")} == {"Bearer <redacted>"}

    # Every token expires mid-stream: one new token, and every event is still delivered.
    post(crm.url + "/_sandbox/oauth/expire")
    produce(kafka_bootstrap, source, [event(n, "second") for n in range(20)])
    outcomes = outcomes_of(kafka_bootstrap, deliveries, 80, worker.assert_alive)
    assert [o for o in outcomes if o["status"] != "delivered"] == []
    assert get_json(crm.url + "/_sandbox/oauth")[1]["issued"] == 2
    calls = api_calls(crm)
    refused = [c for c in calls if c["status"] == 401]
    assert refused, "the expired token was used once before it was replaced"
    assert len(get_json(crm.url + "/_sandbox/contacts")[1]["contacts"]) == 40


@pytest.mark.parametrize("server_secret", ["the-credential-was-regenerated"])
def test_a_wrong_client_secret_pauses_with_the_hint_and_resumes_once_fixed(
    kafka_bootstrap, pipeline_topics, sandboxes, worker
):
    crm, _mg = sandboxes
    source, deliveries = pipeline_topics["source"], pipeline_topics["deliveries"]
    produce(kafka_bootstrap, source, [event(n, "held") for n in range(5)])

    def mautic_health() -> dict[str, Any]:
        status, body = get_json(worker.web + "/health")
        return body["integrations"]["mautic-main"] if status == 200 and body else {}

    state = poll(mautic_health, lambda got: got.get("status") == "fault", 90, worker.assert_alive)
    assert state["status"] == "fault" and state["http_status"] == 400 and state["hint"] == HINT_INVALID_CLIENT
    assert CLIENT_SECRET not in json.dumps(state)
    # Mailgun is not held up; Mautic's events are held: no outcome, nothing dead-lettered.
    outcomes = outcomes_of(kafka_bootstrap, deliveries, 5, worker.assert_alive)
    assert {(o["integration"], o["status"]) for o in outcomes} == {("mailgun-news", "delivered")}
    assert [c for c in api_calls(crm) if c["path"].startswith("/api/")] == []

    # The administrator puts the secret the worker has back: the next probe resumes the integration.
    crm.app[MAUTIC_TOKENS].clients[CLIENT_ID] = OAuthClient(CLIENT_ID, CLIENT_SECRET)
    state = poll(mautic_health, lambda got: got.get("status") == "ok", 90, worker.assert_alive)
    assert state == {"status": "ok", "paused": False}
    outcomes = outcomes_of(kafka_bootstrap, deliveries, 10, worker.assert_alive)
    assert [o for o in outcomes if o["status"] != "delivered"] == []
    assert len(get_json(crm.url + "/_sandbox/contacts")[1]["contacts"]) == 5

"""The benchmark's input: a deterministic, realistic mix of analytics events, and what it should give.

Every variant gets exactly the same records (same seed, same keys, same bytes):

* **contacts**: ``contacts`` known people picked by a Zipf law (rank ``k`` has weight
  ``1 / k**zipf_s``), so a few contacts are very busy and most are seen once or twice. Each
  contact has one anonymous id (its device), a user id, an email and a stable IP; their
  first event is an ``identify`` carrying the traits, later ``track``/``page`` events carry
  only the ids and are stitched, as with a Segment-style SDK.
* **anonymous**: ``anonymous_share`` of the events come from visitors who never identify
  (no email: ``no_email`` drops, or ``event_not_mapped``).
* **consent** is a person's, not an event's: ``consent_denied_share`` of the known people never
  grant marketing consent (every event says ``marketing: false``), ``withdrawal_share`` grant it
  and withdraw it for good from their ``WITHDRAWS_AT``-th event on (one withdrawal each reaches the
  destinations, later events of theirs are dropped), everyone else grants it on every event.
  Anonymous visitors grant it.
* **mix** of known contacts' later events: identify 10 %, page 50 %, Product Viewed 20 %
  (mapped by neither integration), Order Completed 10 % (Mailgun only), Signed Up 5 %,
  Lead Captured 5 % (Mautic only).

Records are keyed by anonymous id, as the producer CLI keys them. ``expected`` runs the
real planner (decode → stitch → gate) over the input, like ``signal-sync preview``, so the
harness can check each variant's outcomes against it, and reports the longest chain of
same-contact requests per integration: with strict per-contact order and no coalescing that
chain, times the destination latency, is a floor on the drain time.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from signal_sync.config import MailgunIntegration, MauticIntegration
from signal_sync.destinations import Integration
from signal_sync.destinations.delivery import DeliveryResult
from signal_sync.destinations.mailgun import members_path
from signal_sync.preview import PreviewDestination, Previewer

INTEGRATION_IDS = ("mautic-main", "mailgun-news")
FIRST_NAMES = ("Ada", "Ben", "Chen", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lea")
LAST_NAMES = ("Ng", "Okafor", "Patel", "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Varga", "Weiss")
PLANS = ("free", "pro", "team", "enterprise")
PAGES = ("/", "/pricing", "/docs", "/blog/launch", "/signup", "/features", "/about", "/contact")
BASE_TIME = datetime(2026, 6, 6, 12, 0, 0, tzinfo=UTC)
WITHDRAWS_AT = 5
"""A withdrawing person's events say ``marketing: false`` from this one (counted from 1) on."""
LATER_MIX = (
    ("identify", None, 0.10),
    ("page", None, 0.50),
    ("track", "Product Viewed", 0.20),
    ("track", "Order Completed", 0.10),
    ("track", "Signed Up", 0.05),
    ("track", "Lead Captured", 0.05),
)


def message_id(index: int) -> str:
    """The message id of input event ``index``; the harness reads the index back from outcomes."""
    return f"m{index:09d}"


def index_of(message_id_value: str) -> int | None:
    """Inverse of ``message_id``; None for ids the benchmark did not make."""
    if len(message_id_value) == 10 and message_id_value[0] == "m" and message_id_value[1:].isdigit():
        return int(message_id_value[1:])
    return None


@dataclass(frozen=True)
class WorkloadSpec:
    events: int
    contacts: int = 50_000
    zipf_s: float = 1.0
    anonymous_share: float = 0.20
    consent_denied_share: float = 0.10
    withdrawal_share: float = 0.02
    anonymous_visitors: int = 20_000
    utm_share: float = 0.05
    seed: int = 7


@dataclass
class Workload:
    spec: WorkloadSpec
    records: list[tuple[bytes, bytes]]
    kinds: Counter[str] = field(default_factory=Counter)
    contacts_seen: int = 0
    hottest_contact_events: int = 0

    def describe(self) -> dict[str, Any]:
        sizes = [len(v) for _, v in self.records]
        return {
            "events": len(self.records),
            "contacts": self.spec.contacts,
            "zipf_s": self.spec.zipf_s,
            "anonymous_share": self.spec.anonymous_share,
            "consent_denied_share": self.spec.consent_denied_share,
            "withdrawal_share": self.spec.withdrawal_share,
            "seed": self.spec.seed,
            "distinct_contacts_seen": self.contacts_seen,
            "hottest_contact_events": self.hottest_contact_events,
            "hottest_contact_share": round(self.hottest_contact_events / max(1, len(self.records)), 4),
            "by_kind": dict(sorted(self.kinds.items())),
            "mean_event_bytes": round(sum(sizes) / max(1, len(sizes)), 1),
        }


def _contact(c: int) -> dict[str, Any]:
    return {
        "anon": f"a-{c:06d}",
        "user": f"u-{c:06d}",
        "email": f"contact{c}@example.com",
        "first": FIRST_NAMES[c % len(FIRST_NAMES)],
        "last": LAST_NAMES[(c // len(FIRST_NAMES)) % len(LAST_NAMES)],
        "plan": PLANS[c % len(PLANS)],
        "company": f"Company {c % 997}",
        "ip": f"198.51.{(c // 250) % 256}.{c % 250 + 1}",
    }


def _page_url(rng: random.Random, utm_share: float) -> str:
    url = "https://www.example.com" + rng.choice(PAGES)
    if rng.random() < utm_share:
        url += "?utm_source=newsletter&utm_medium=email&utm_campaign=june"
    return url


def generate(spec: WorkloadSpec) -> Workload:
    """The input records ``(key, value)``, deterministic for a given spec."""
    rng = random.Random(spec.seed)
    weights = list(itertools.accumulate(1.0 / (k**spec.zipf_s) for k in range(1, spec.contacts + 1)))
    later_kinds = [(t, e) for t, e, _ in LATER_MIX]
    later_weights = list(itertools.accumulate(w for _, _, w in LATER_MIX))
    consent_of: dict[int, str] = {}  # a known person's consent: "denied", "withdraws" or "granted"
    seen: set[int] = set()
    per_contact: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    records: list[tuple[bytes, bytes]] = []
    for i in range(spec.events):
        stamp = (BASE_TIME + timedelta(milliseconds=10 * i)).isoformat().replace("+00:00", "Z")
        event: dict[str, Any] = {"messageId": message_id(i), "timestamp": stamp}
        if rng.random() < spec.anonymous_share:
            anon = f"v-{rng.randrange(spec.anonymous_visitors):06d}"
            event["anonymousId"] = anon
            if rng.random() < 0.7:
                event["type"] = "page"
                context: dict[str, Any] = {"page": {"url": _page_url(rng, spec.utm_share)}}
            else:
                event.update(
                    type="track", event="Product Viewed", properties={"sku": f"sku-{rng.randrange(500)}"}
                )
                context = {}
            context["ip"] = f"192.0.2.{rng.randrange(1, 255)}"
            context["consent"] = {"canonical": {"marketing": True}}
            event["context"] = context
            kinds["anonymous " + (event.get("event") or event["type"])] += 1
            records.append((anon.encode(), orjson.dumps(event)))
            continue
        c = rng.choices(range(spec.contacts), cum_weights=weights)[0]
        per_contact[c] += 1
        person = _contact(c)
        event["anonymousId"] = person["anon"]
        event["userId"] = person["user"]
        if c not in consent_of:
            draw = rng.random()
            consent_of[c] = (
                "denied"
                if draw < spec.consent_denied_share
                else "withdraws"
                if draw < spec.consent_denied_share + spec.withdrawal_share
                else "granted"
            )
        marketing = consent_of[c] == "granted" or (
            consent_of[c] == "withdraws" and per_contact[c] < WITHDRAWS_AT
        )
        context = {"ip": person["ip"], "consent": {"canonical": {"marketing": marketing}}}
        if c not in seen:
            seen.add(c)
            kind, name = "identify", None
        else:
            kind, name = rng.choices(later_kinds, cum_weights=later_weights)[0]
        event["type"] = kind
        if kind == "identify":
            event["traits"] = {
                "email": person["email"],
                "firstName": person["first"],
                "lastName": person["last"],
                "plan": person["plan"],
                "company": person["company"],
            }
        elif kind == "page":
            context["page"] = {"url": _page_url(rng, spec.utm_share)}
        else:
            event["event"] = name
            if name == "Order Completed":
                event["properties"] = {
                    "order_id": f"ord-{i}",
                    "revenue": round(rng.uniform(5, 500), 2),
                    "currency": "EUR",
                }
            elif name == "Signed Up":
                event["properties"] = {"method": rng.choice(("email", "google", "github"))}
                if rng.random() < 0.5:
                    context["campaign"] = {"source": "newsletter", "medium": "email"}
            elif name == "Lead Captured":
                event["properties"] = {"lead_source": rng.choice(("webinar", "ebook", "demo"))}
            else:
                event["properties"] = {"sku": f"sku-{rng.randrange(500)}"}
        event["context"] = context
        kinds[name or kind] += 1
        records.append((person["anon"].encode(), orjson.dumps(event)))
    return Workload(
        spec=spec,
        records=records,
        kinds=kinds,
        contacts_seen=len(seen),
        hottest_contact_events=max(per_contact.values(), default=0),
    )


def bench_integrations(
    mautic_url: str = "http://127.0.0.1:1", mailgun_url: str = "http://127.0.0.1:2"
) -> list[Integration]:
    """The two integrations every variant delivers to (same ids and consent as the worker config)."""
    return [
        MauticIntegration(
            id=INTEGRATION_IDS[0],
            type="mautic",
            base_url=mautic_url,
            api_user="signal",
            api_password="sandbox-password",  # noqa: S106 (sandbox emulator credentials)
        ),
        MailgunIntegration(
            id=INTEGRATION_IDS[1],
            type="mailgun",
            base_url=mailgun_url,
            api_key="key-sandbox",
            list_address="newsletter@mg.example.com",
        ),
    ]


NO_CONTACTS = orjson.dumps({"total": 0, "contacts": []})


class KnownContacts(PreviewDestination):
    """Answers as the emulators do: a person is known to a destination once an upsert reached it,
    so a withdrawal of someone never upserted finds nobody (Mautic) or no member (Mailgun)."""

    def __init__(self) -> None:
        self.known: set[tuple[str, str]] = set()

    def answer(self, integration: Integration, method: str, url: str, email: str) -> DeliveryResult:
        path = url.removeprefix(integration.base_url).partition("?")[0]
        person = (integration.id, email)
        upserts = ("/api/contacts/new", members_path(getattr(integration, "list_address", "")))
        if method == "POST" and path in upserts:
            self.known.add(person)
        elif person not in self.known:
            if method == "GET" and path == "/api/contacts":
                return DeliveryResult("delivered", 200, None, 1, None, None, None, reply=NO_CONTACTS)
            if integration.type == "mailgun" and method == "PUT":
                return DeliveryResult("absent", 404, None, 1, "http_404", None, None)
        return super().answer(integration, method, url, email)


def expected_outcomes(workload: Workload) -> dict[str, Any]:
    """Per integration: outcome status counts the input should give, and its longest same-contact chain.

    Runs the records through ``preview`` with destinations that know whom they were sent
    (``KnownContacts``); every request that passes the gate is accepted by the emulators,
    which holds for this input. A chain is keyed by the record key: a known contact's one
    anonymous id.
    """
    previewer = Previewer(bench_integrations(), KnownContacts())
    statuses: dict[str, Counter[str]] = {i: Counter() for i in INTEGRATION_IDS}
    chains: dict[str, Counter[bytes]] = {i: Counter() for i in INTEGRATION_IDS}
    requests: Counter[str] = Counter()
    for key, value in workload.records:
        for line in previewer.preview(value):
            integration = line["integration"]
            calls = len(line.get("calls") or ([line["request"]] if line["request"] else []))
            requests[integration] += calls
            if line["reason"] is None:
                statuses[integration]["delivered"] += 1
                chains[integration][key] += calls
            else:
                statuses[integration][f"dropped:{line['reason']}"] += 1
    return {
        "statuses": {key: dict(sorted(counts.items())) for key, counts in statuses.items()},
        "requests": {key: requests[key] for key in INTEGRATION_IDS},
        "longest_contact_chain": {key: max(chain.values(), default=0) for key, chain in chains.items()},
    }

"""The end-to-end demo: a local Kafka broker, sandbox Mautic and Mailgun, the worker, the seed events.

Run with ``make demo``. Everything runs on 127.0.0.1 and is stopped at the end (pass
``--keep`` to leave it running and poke at it). The worker is started exactly as a user
would start it, ``signal-sync worker -c FILE``, with ``examples/config.local.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import WorkerProcess, consume_until, free_port
from local_kafka import LocalKafka

from signal_sync.sandbox import mailgun, mautic, start_in_thread

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "config.local.yaml"
JANE = "jane@example.com"
"""The seed person who withdraws consent, then is erased."""
EVENTS = REPO / "examples" / "seed-events.jsonl"


def cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "signal_sync.cli.main", *args], check=True, env=env)


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 (loopback emulator)
        return json.loads(reply.read())


def show_outcomes(outcomes: list[dict]) -> None:
    row = "{:<26} {:<13} {:<16} {:<17} {:<10} {:<17} {:<4} {}"
    print(
        "\n"
        + row.format("message_id", "integration", "event", "operation", "status", "reason", "http", "created")
    )
    for o in outcomes:
        created = "" if o["created"] is None else o["created"]
        fields = (o["message_id"][:26], o["integration"], str(o["event"])[:16], o.get("operation") or "")
        print(row.format(*fields, o["status"], o["reason"] or "", o["http_status"] or "", created))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave broker, emulators and worker running")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="signal-sync-demo-"))
    broker = LocalKafka()
    print("== starting a local Apache Kafka broker (KRaft)")
    bootstrap = broker.start(work / "kafka")
    custom_fields = (*mautic.DEFAULT_CUSTOM_FIELDS, "signal_plan")  # the config's mapped field
    crm = start_in_thread(
        mautic.create_app(username="signal", password="sandbox-password", custom_fields=custom_fields)
    )
    mg = start_in_thread(mailgun.create_app(api_key="key-sandbox"))
    print(f"== broker {bootstrap}; sandbox Mautic {crm.url}; sandbox Mailgun {mg.url}")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MAUTIC_BASE_URL": crm.url,
        "MAILGUN_BASE_URL": mg.url,
        "SIGNAL_SYNC_WORKER__STATE_DIR": str(work / "state"),
        "SIGNAL_SYNC_WORKER__WEB_PORT": str(free_port()),
    }
    worker = WorkerProcess(CONFIG, work / "worker.log")
    try:
        cli("topics", "create", "-c", str(CONFIG), "--partitions", "12", env=env)
        os.environ.update(env)
        worker.start()
        print(f"== worker started (log: {worker.log_path}); producing {EVENTS.name}")
        cli("produce", "-c", str(CONFIG), str(EVENTS), env=env)
        expected = 2 * sum(1 for line in EVENTS.read_bytes().splitlines() if line.strip())
        started = time.monotonic()
        outcomes = consume_until(
            bootstrap, "signal.deliveries", lambda got: len(got) >= expected, 120, check=worker.assert_alive
        )
        took = time.monotonic() - started
        print(f"== {len(outcomes)}/{expected} outcomes on signal.deliveries in {took:.1f}s")
        show_outcomes(sorted(outcomes, key=lambda o: (o["message_id"], o["integration"])))
        print("\n== What Mautic received for Signed Up (the seed's example payload)")
        for request in get_json(f"{crm.url}/_sandbox/requests")["requests"]:
            body = request["body"]
            for contact in body if isinstance(body, list) else [body]:  # single upsert or batch item
                if isinstance(contact, dict) and "signal_signup_method" in contact:
                    print(json.dumps(contact, indent=2))
        print(
            "\n== Mautic contacts (sandbox state; signal_plan is mapped from traits.plan; "
            "seed-withdraw-1: jane@example.com withdrew consent)"
        )
        for contact in get_json(f"{crm.url}/_sandbox/contacts")["contacts"]:
            fields = {k: v for k, v in contact["fields"]["all"].items() if v not in (None, "") and k != "id"}
            dnc = [{k: e[k] for k in ("reason", "comments", "channel")} for e in contact["doNotContact"]]
            print(json.dumps({**fields, "tags": [t["tag"] for t in contact["tags"]], "doNotContact": dnc}))
        print("\n== Mailgun list members (sandbox state)")
        for member in get_json(f"{mg.url}/_sandbox/members")["members"]["newsletter@mg.example.com"]:
            print(json.dumps(member))
        complete = len(outcomes) == expected
        print("\n== jane@example.com asks to be forgotten: signal-sync erase")
        cli("erase", "-c", str(CONFIG), "--email", JANE, "--request-id", "demo-erase-jane", env=env)
        outcomes = consume_until(
            bootstrap,
            "signal.deliveries",
            lambda got: sum(o["message_id"] == "demo-erase-jane" for o in got) >= 2,
            120,
            check=worker.assert_alive,
        )
        erased = [o for o in outcomes if o["message_id"] == "demo-erase-jane"]
        show_outcomes(erased)
        in_mautic = [
            c
            for c in get_json(f"{crm.url}/_sandbox/contacts")["contacts"]
            if c["fields"]["all"]["email"] == JANE
        ]
        in_mailgun = [
            m
            for m in get_json(f"{mg.url}/_sandbox/members")["members"]["newsletter@mg.example.com"]
            if m["address"] == JANE
        ]
        print(
            f"== after the erasure: {JANE} in Mautic: {len(in_mautic)} contact(s), "
            f"in the Mailgun list: {len(in_mailgun)} member(s)"
        )
        gone = all(o["status"] == "delivered" for o in erased) and not in_mautic and not in_mailgun
        return 0 if complete and gone else 1
    finally:
        if args.keep:
            print(f"\n--keep: broker {bootstrap}, worker log {worker.log_path}; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        worker.stop()
        crm.stop()
        mg.stop()
        broker.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())

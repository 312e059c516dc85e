"""Loading the demo business into a running Onefold through its public interfaces: the
tracking API for what the web shop, app, tills, email and help desk send, and the import
path for the CRM and till exports — exactly what a newcomer would use."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from onefold.collect.importer import ImportSpec, parse_mapping, run_import
from onefold.demo.generator import DemoData, generate_demo, write_csv
from onefold.interfaces.client import ClientError, HttpClient
from onefold.runtime import Onefold

log = logging.getLogger("onefold.demo")

DEMO_SEED = 7
BATCH_BYTES = 400 * 1024
BATCH_MESSAGES = 500

CRM_SPEC = ImportSpec(
    kind="profiles",
    user_id_column="customer_number",
    anonymous_id_column="crm_id",
    mapping=parse_mapping([
        "firstName=first_name", "lastName=last_name", "address.street=street",
        "address.postalCode=postal_code", "address.city=city", "address.country=country",
        "birthday=birth_date", "createdAt=created_at", "loyaltyCard=loyalty_card",
    ]),
)  # fmt: skip
POS_SPEC = ImportSpec(
    kind="events",
    user_id_column="loyalty_card",
    anonymous_id_column="anonymous_id",
    event_column="event",
    timestamp_column="timestamp",
)


def _batches(messages: list[dict]) -> list[bytes]:
    bodies, current, size = [], [], 0
    for message in messages:
        encoded = orjson.dumps(message)
        if current and (size + len(encoded) > BATCH_BYTES or len(current) >= BATCH_MESSAGES):
            bodies.append(b'{"batch":[' + b",".join(current) + b"]}")
            current, size = [], 0
        current.append(encoded)
        size += len(encoded) + 1
    if current:
        bodies.append(b'{"batch":[' + b",".join(current) + b"]}")
    return bodies


def _post_batch(http: httpx.Client, write_key: str, body: bytes) -> None:
    for _ in range(600):
        response = http.post("/v1/batch", content=body, auth=(write_key, ""))
        if response.status_code == 200:
            return
        if response.status_code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        raise ClientError("demo_rejected", f"the demo batch was refused: {response.text[:300]}")
    raise ClientError("overloaded", "the server stayed busy")


def load_demo(
    url: str,
    admin_token: str,
    workdir: Path,
    customers: int = 2000,
    say: Callable[[str], None] = print,
) -> DemoData:
    """Create the demo sources, send their messages, import the CRM and till exports and
    run probabilistic matching once."""
    client = HttpClient(url, admin_token)
    try:
        started = time.monotonic()
        data = generate_demo(seed=DEMO_SEED, customers=customers)
        existing = {s["name"]: s for s in client.list_sources()}
        keys = {}
        for demo_source in data.sources:
            source = existing.get(demo_source.name) or client.create_source(
                demo_source.name, demo_source.type
            )
            keys[demo_source.name] = source["write_key"]
        total = sum(len(m) for m in data.messages.values())
        say(f"demo: sending {total:,} messages from {len(data.messages)} sources")
        with httpx.Client(base_url=url, timeout=60) as http:
            for name, messages in data.messages.items():
                for body in _batches(messages):
                    _post_batch(http, keys[name], body)
        workdir.mkdir(parents=True, exist_ok=True)
        crm_file, pos_file = workdir / "crm-export.csv", workdir / "till-export.csv"
        write_csv(data.crm_rows, crm_file)
        write_csv(data.pos_rows, pos_file)
        for name, path, spec in (("crm", crm_file, CRM_SPEC), ("pos", pos_file, POS_SPEC)):
            result = run_import(client, name, path, spec, rejects_path=workdir / f"{name}.rejects")
            say(f"demo: imported {result.accepted:,} rows of {path.name} into {name}")
        client.flush()
        # the CRM spells people differently: probabilistic matching finds them
        matched = client.identity("match", {})
        say(
            f"demo: matching merged {matched['merged']:,} pairs of profiles; "
            f"{matched['review']:,} wait for review (onefold identity links)"
        )
        say(f"demo: loaded in {time.monotonic() - started:.0f} s")
        return data
    finally:
        client.close()


def load_demo_in_background(onefold: Onefold, url: str) -> threading.Thread | None:
    """Load the demo once per data directory, after the server starts answering."""
    workdir = onefold.settings.data_dir / "demo"
    marker = workdir / "loaded"
    if marker.exists():
        return None

    def run() -> None:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        try:
            load_demo(url, onefold.admin_token, workdir, onefold.settings.demo_customers)
        except Exception:
            log.exception("loading the demo failed; it will be tried again at the next start")
            return
        marker.write_text("loaded\n")

    thread = threading.Thread(target=run, name="onefold-demo", daemon=True)
    thread.start()
    return thread

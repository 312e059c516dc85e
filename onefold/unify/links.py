"""Links between identifiers beyond the deterministic rules.

Two kinds: ``probabilistic`` (a pair of profiles the matcher scored; merged when over the
auto-merge threshold, queued for review when between the review thresholds) and
``manual`` (an "always link" override: a person says these two belong together).

A link joins the profiles that hold its two identifiers — each profile is named by its
anchor identifier, which stays with the person through later merges. An *active* link is
applied as if it were a message holding both identifiers, placed right after the event
at its ``position`` (the last event resolved when it was accepted); replays and rebuilds
put it back at the same place, so they give what applying it live gave. The rules still
apply: a link between profiles with different user ids is refused and recorded, like any
link. Undoing a link re-derives the profiles it joined (see :mod:`onefold.unify.overrides`).

Statuses: ``review`` (waiting for a person), ``active`` (applied), ``rejected`` (a person
said no, or the matcher's pair was undone: the matcher does not propose it again), and
``undone`` (a manual link removed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import orjson

from onefold.errors import OnefoldError
from onefold.unify.resolver import Changes, Key, Message, Resolver

KINDS = ("probabilistic", "manual")
STATUSES = ("review", "active", "rejected", "undone")
PREFIX = "link:"
"""Merges and refusals a link caused carry ``link:<id>`` as their message id."""


class LinkError(OnefoldError):
    """A link that cannot be made or decided."""


@dataclass(frozen=True)
class Link:
    id: str
    kind: str
    a: Key
    b: Key
    position: int | None
    probability: float | None
    reasons: str | None  # JSON

    @property
    def message_id(self) -> str:
        return PREFIX + self.id


def link_id(a: Key, b: Key) -> str:
    """One id per unordered pair of identifiers."""
    first, second = sorted([a, b])
    text = "\x1f".join([*first, *second])
    return "lk_" + hashlib.sha256(text.encode()).hexdigest()[:20]


_COLUMNS = "id, kind, namespace_a, value_a, namespace_b, value_b, position, probability, reasons"


def _links(rows: Iterable[tuple]) -> list[Link]:
    return [
        Link(id, kind, (na, va), (nb, vb), position, probability, reasons)
        for id, kind, na, va, nb, vb, position, probability, reasons in rows
    ]


def active_between(con: duckdb.DuckDBPyConnection, after: int, upto: int) -> list[Link]:
    """Active links placed after an event of ``after < seq <= upto``, in order."""
    return _links(con.execute(
        f"""
        SELECT {_COLUMNS} FROM identity_links
        WHERE status = 'active' AND position > ? AND position <= ? ORDER BY position, id
        """,
        [after, upto],
    ).fetchall())  # fmt: skip


def active(con: duckdb.DuckDBPyConnection) -> list[Link]:
    """Every active link, in the order a full rebuild applies them (e.g. on Spark)."""
    return _links(con.execute(
        f"SELECT {_COLUMNS} FROM identity_links WHERE status = 'active' ORDER BY position, id"
    ).fetchall())  # fmt: skip


def active_touching(con: duckdb.DuckDBPyConnection, keys: set[Key]) -> list[Link]:
    """Active links with an identifier among ``keys``, in order."""
    if not keys:
        return []
    links = _links(con.execute(
        f"SELECT {_COLUMNS} FROM identity_links WHERE status = 'active' ORDER BY position, id"
    ).fetchall())  # fmt: skip
    return [link for link in links if link.a in keys or link.b in keys]


def has_active(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT 1 FROM identity_links WHERE status = 'active'").fetchall())


def resolve_with_links(resolver: Resolver, messages: list[Message], links: list[Link]) -> Changes:
    """Resolve ``messages`` (in seq order) with each link applied right after the event
    at its position."""
    if not links:
        return resolver.resolve(messages)
    start = 0
    for link in links:
        end = start
        while end < len(messages) and messages[end].seq <= link.position:
            end += 1
        resolver.resolve(messages[start:end])
        resolver.link(link.position, link.message_id, link.a, link.b)
        start = end
    return resolver.resolve(messages[start:])


def merge_details(links: Iterable[Link]) -> dict[str, tuple[str, float | None, str | None]]:
    """message id → (method, probability, reasons) for the merges links cause."""
    return {link.message_id: (link.kind, link.probability, link.reasons) for link in links}


def record(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    a: Key,
    b: Key,
    status: str,
    *,
    position: int | None = None,
    probability: float | None = None,
    reasons: object = None,
    note: str | None = None,
) -> str | None:
    """Store a link; returns its id, or None when the pair already has a link a person
    decided on (rejected or undone) or one that is active or waiting."""
    if kind not in KINDS:
        raise LinkError("invalid_link", f"kind must be one of {', '.join(KINDS)}")
    if a == b:
        raise LinkError("invalid_link", "a link needs two different identifiers")
    identifier = link_id(a, b)
    existing = con.execute(
        "SELECT status FROM identity_links WHERE id = ?", [identifier]
    ).fetchall()
    if existing:
        if kind == "manual" and existing[0][0] in ("rejected", "undone", "review"):
            con.execute("DELETE FROM identity_links WHERE id = ?", [identifier])
        else:
            return None
    con.execute(
        """
        INSERT INTO identity_links VALUES
            (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP,
             CASE WHEN ? = 'review' THEN NULL ELSE now()::TIMESTAMP END)
        """,
        [identifier, kind, *a, *b, status, position, probability,
         orjson.dumps(reasons).decode() if reasons is not None else None, note, status],
    )  # fmt: skip
    return identifier


def get(con: duckdb.DuckDBPyConnection, identifier: str) -> dict:
    rows = list_links(con, id=identifier)
    if not rows:
        raise LinkError("link_not_found", f"no link {identifier!r}")
    return rows[0]


def list_links(
    con: duckdb.DuckDBPyConnection,
    *,
    status: str | None = None,
    kind: str | None = None,
    id: str | None = None,
    limit: int = 100,
) -> list[dict]:
    """Links, the most probable first; with each identifier's current profile."""
    if status is not None and status not in STATUSES:
        raise LinkError("invalid_status", f"status must be one of {', '.join(STATUSES)}")
    clauses, params = [], []
    for column, value in (("status", status), ("kind", kind), ("l.id", id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    cursor = con.execute(
        f"""
        SELECT l.id, l.kind, l.status, l.namespace_a, l.value_a, a.profile_id AS profile_a,
               l.namespace_b, l.value_b, b.profile_id AS profile_b, l.probability, l.reasons,
               l.note, l.position, l.created_at, l.decided_at
        FROM identity_links l
        LEFT JOIN identifiers a ON a.namespace = l.namespace_a AND a.value = l.value_a
        LEFT JOIN identifiers b ON b.namespace = l.namespace_b AND b.value = l.value_b
        {where}
        ORDER BY l.probability DESC NULLS LAST, l.created_at, l.id LIMIT ?
        """,
        [*params, limit],
    )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["reasons"] = orjson.loads(row["reasons"]) if row["reasons"] else None
    return rows


def set_status(
    con: duckdb.DuckDBPyConnection,
    identifier: str,
    status: str,
    position: int | None,
    note: str | None,
) -> None:
    con.execute(
        """
        UPDATE identity_links SET status = ?, position = ?, note = coalesce(?, note),
               decided_at = now()::TIMESTAMP
        WHERE id = ?
        """,
        [status, position, note, identifier],
    )

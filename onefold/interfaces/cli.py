"""The ``onefold`` command line."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from onefold import __version__
from onefold.collect.sources import SOURCE_TYPES
from onefold.interfaces.client import ClientError, connect
from onefold.runtime import DataDirInUse
from onefold.settings import Settings

app = typer.Typer(help="Onefold, the open-source customer data platform.", no_args_is_help=True)
sources_app = typer.Typer(help="Sources and their write keys.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: settings, then ./onefold-data)."),
]


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    demo: Annotated[
        bool, typer.Option(help="Load the demo business on first start, through the APIs.")
    ] = False,
) -> None:
    """Start the server: tracking API at /v1, management API at /api."""
    from onefold.interfaces.server import serve as run_server

    settings = _settings(data_dir, host=host, port=port)
    console.print(
        f"Onefold {__version__} on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir})"
    )
    try:
        run_server(settings, demo=demo)
    except DataDirInUse as exc:
        _fail(str(exc))


def _client(data_dir: Path | None):
    try:
        return connect(_settings(data_dir))
    except (ClientError, DataDirInUse) as exc:
        _fail(str(exc))


@sources_app.command("create")
def sources_create(
    name: str,
    type: Annotated[str, typer.Option("--type", help=", ".join(SOURCE_TYPES))] = "other",
    data_dir: DataDir = None,
) -> None:
    """Create a source and print its write key."""
    client = _client(data_dir)
    try:
        source = client.create_source(name, type)
    except ClientError as exc:
        _fail(exc.message)
    finally:
        client.close()
    console.print(f"Created source [bold]{source['name']}[/bold] ({source['type']})")
    console.print(f"write key: {source['write_key']}")


@sources_app.command("list")
def sources_list(data_dir: DataDir = None) -> None:
    """List sources with their write keys."""
    client = _client(data_dir)
    try:
        sources = client.list_sources()
    finally:
        client.close()
    table = Table("name", "type", "enabled", "created")
    table.add_column("write key", no_wrap=True, overflow="ignore", min_width=35)
    for source in sources:
        table.add_row(
            source["name"], source["type"], "yes" if source["enabled"] else "no",
            str(source["created_at"])[:19], source["write_key"],
        )  # fmt: skip
    console.print(table)


def _set_enabled(name: str, enabled: bool, data_dir: Path | None) -> None:
    client = _client(data_dir)
    try:
        source = client.set_source_enabled(name, enabled)
    except ClientError as exc:
        _fail(exc.message)
    finally:
        client.close()
    state = "enabled" if source["enabled"] else "disabled"
    console.print(f"Source [bold]{name}[/bold] is {state}")


@sources_app.command("disable")
def sources_disable(name: str, data_dir: DataDir = None) -> None:
    """Stop accepting messages for a source (its stored data stays)."""
    _set_enabled(name, False, data_dir)


@sources_app.command("enable")
def sources_enable(name: str, data_dir: DataDir = None) -> None:
    """Accept messages for a disabled source again."""
    _set_enabled(name, True, data_dir)


profiles_app = typer.Typer(help="Unified profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)


@profiles_app.command("search")
def profiles_search(
    where: Annotated[
        list[str],
        typer.Argument(
            help="Conditions, all of which must hold: country=ES, orders>=2, "
            "email~@example.com (contains), phone? (has it)."
        ),
    ],
    limit: Annotated[int, typer.Option(help="How many profiles to list.")] = 20,
    data_dir: DataDir = None,
) -> None:
    """Find profiles by their traits and computed traits."""
    client = _client(data_dir)
    try:
        found = client.search_profiles(where, limit)
    except ClientError as exc:
        _fail(exc.message)
    finally:
        client.close()
    names = sorted({name for p in found["profiles"] for name in p["traits"]})[:6]
    table = Table("profile", *names, title=f"{found['total']:,} profiles")
    for profile in found["profiles"]:
        table.add_row(profile["profile_id"], *(_show(profile["traits"].get(n)) for n in names))
    console.print(table)


@profiles_app.command("show")
def profiles_show(
    identifier: Annotated[
        str, typer.Argument(help="namespace:value, e.g. email:jane@example.com or user_id:42")
    ],
    events: Annotated[int, typer.Option(help="How many recent events to show.")] = 10,
    data_dir: DataDir = None,
) -> None:
    """Show a profile: identities, merges, refused links and recent events."""
    client = _client(data_dir)
    try:
        profile = client.get_profile(identifier)
        recent = client.timeline(identifier, events) if events else {"events": []}
    except ClientError as exc:
        _fail(exc.message)
    finally:
        client.close()
    console.print(f"[bold]Profile {profile['profile_id']}[/bold]")
    identities = Table("namespace", "value", "source", "first seen", title="Identities")
    for item in profile["identities"]:
        identities.add_row(
            item["namespace"], item["value"], item["source"] or "",
            str(item["first_seen"] or "")[:19],
        )  # fmt: skip
    console.print(identities)
    if profile["traits"] or profile["computed_traits"]:
        traits = Table("trait", "value", "source", "set at", title="Traits")
        for name, trait in profile["traits"].items():
            traits.add_row(name, _show(trait["value"]), trait["source"] or "",
                           str(trait["updated_at"])[:19])  # fmt: skip
        for name, value in profile["computed_traits"].items():
            traits.add_row(name, _show(value), "computed", "")
        console.print(traits)
    if profile["accounts"]:
        console.print("Accounts: " + ", ".join(profile["accounts"]))
    if profile["merges"]:
        merges = Table("when", "method", "absorbed", "linked by", title="Merges")
        for merge in profile["merges"]:
            merges.add_row(
                str(merge["created_at"])[:19], merge["method"], merge["absorbed_id"],
                f"{merge['namespace']}:{merge['value']}" if merge["namespace"] else "",
            )  # fmt: skip
        console.print(merges)
    if profile["refused_links"]:
        refused = Table("rule", "identifier", "detail", title="Refused links")
        for item in profile["refused_links"]:
            refused.add_row(item["rule"], f"{item['namespace']}:{item['value']}", item["detail"])
        console.print(refused)
    if recent["events"]:
        timeline = Table("time", "source", "type", "event", title="Recent events")
        for event in recent["events"]:
            timeline.add_row(
                str(event["timestamp"])[:19], event["source"] or "", event["type"],
                event["event"] or (event["raw"].get("name") or ""),
            )  # fmt: skip
        console.print(timeline)


identity_app = typer.Typer(help="The identity graph: health, overrides, rules.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(identity_app, name="identity")
traits_app = typer.Typer(help="Traits and computed traits.", no_args_is_help=True)
app.add_typer(traits_app, name="traits")


def _identity(action: str, body: dict | None, data_dir: Path | None) -> dict:
    client = _client(data_dir)
    try:
        return client.identity(action, body)
    except ClientError as exc:
        _fail(exc.message)
    finally:
        client.close()


@identity_app.command("health")
def identity_health(
    over: Annotated[int, typer.Option(help="Count profiles with more identifiers.")] = 20,
    data_dir: DataDir = None,
) -> None:
    """Largest profiles, refused links per rule, most frequent blocked values."""
    report = _identity("health", {"over": over}, data_dir)
    console.print(
        f"{report['profiles']:,} profiles, {report['identifiers']:,} identifiers, "
        f"{report['merges']:,} merges; {report['profiles_over']['profiles']:,} profiles "
        f"hold more than {over} identifiers"
    )
    largest = Table("profile", "identifiers", "emails", "phones", "anonymous ids",
                    title="Largest profiles")  # fmt: skip
    for row in report["largest_profiles"]:
        largest.add_row(row["profile_id"], str(row["identifiers"]), str(row["emails"]),
                        str(row["phones"]), str(row["anonymous_ids"]))  # fmt: skip
    console.print(largest)
    refused = Table("rule", "namespace", "links", title="Refused links")
    for row in report["refused_links"]:
        refused.add_row(row["rule"], row["namespace"], str(row["links"]))
    console.print(refused)
    if report.get("links"):
        console.print("Links beyond the rules: " + ", ".join(
            f"{row['links']:,} {row['kind']} {row['status']}" for row in report["links"]
        ))  # fmt: skip
    if report.get("ignored_merge_properties"):
        console.print("Merge call entries that linked nothing: " + ", ".join(
            f"{row['occurrences']:,} {row['type']} ({row['reason']})"
            for row in report["ignored_merge_properties"]
        ))  # fmt: skip


@identity_app.command("block")
def identity_block(
    identifier: Annotated[str, typer.Argument(help="namespace:value")],
    reason: Annotated[str, typer.Option(help="Why, for the audit.")],
    data_dir: DataDir = None,
) -> None:
    """Stop an identifier from linking anything; re-derives the profiles it joined."""
    result = _identity(
        "override", {"kind": "block", "identifier": identifier, "reason": reason}, data_dir
    )
    console.print(
        f"{len(result['profiles_before'])} profile(s) became {len(result['profiles_after'])}; "
        f"{result['events_replayed']} events re-attributed"
    )


@identity_app.command("never-link")
def identity_never_link(
    identifier: Annotated[str, typer.Argument(help="namespace:value")],
    other: Annotated[str, typer.Argument(help="namespace:value")],
    reason: Annotated[str, typer.Option(help="Why, for the audit.")],
    data_dir: DataDir = None,
) -> None:
    """Keep two identifiers out of one profile; splits it if they share one now."""
    body = {"kind": "never_link", "identifier": identifier, "other": other, "reason": reason}
    result = _identity("override", body, data_dir)
    console.print(
        f"{len(result['profiles_before'])} profile(s) became {len(result['profiles_after'])}; "
        f"{result['events_replayed']} events re-attributed"
    )


@identity_app.command("always-link")
def identity_always_link(
    identifier: Annotated[str, typer.Argument(help="namespace:value")],
    other: Annotated[str, typer.Argument(help="namespace:value")],
    reason: Annotated[str, typer.Option(help="Why, for the audit.")],
    data_dir: DataDir = None,
) -> None:
    """Join the profiles holding two identifiers (undo with `identity undo LINK_ID`)."""
    body = {"identifier": identifier, "other": other, "reason": reason}
    result = _identity("link", body, data_dir)
    console.print(
        f"link {result['id']}: {len(result['profiles_before'])} profile(s) became "
        f"{len(result['profiles_after'])}; {result['events_replayed']} events re-attributed"
    )


@identity_app.command("match")
def identity_match(
    auto_merge: Annotated[float, typer.Option(help="Merge pairs at least this probable.")] = 0.95,
    review_low: Annotated[float, typer.Option(help="Queue pairs at least this probable.")] = 0.5,
    data_dir: DataDir = None,
) -> None:
    """Probabilistic matching over the profiles' traits: merge the sure pairs, queue the
    likely ones for review."""
    result = _identity("match", {"auto_merge": auto_merge, "review_low": review_low}, data_dir)
    console.print(
        f"{result['records']:,} profiles compared; {result['pairs']:,} candidate pairs: "
        f"{result['merged']:,} merged, {result['review']:,} to review, "
        f"{result['known']:,} decided before"
    )


@identity_app.command("links")
def identity_links(
    status: Annotated[
        str | None, typer.Option(help="review (the queue), active, rejected or undone.")
    ] = "review",
    limit: Annotated[int, typer.Option(help="How many to list.")] = 20,
    data_dir: DataDir = None,
) -> None:
    """List links: by default the review queue, most probable first."""
    found = _identity("links", {"status": status, "limit": limit}, data_dir)["links"]
    table = Table("link", "kind", "status", "probability", "a", "b", "strongest reasons",
                  title=f"{len(found)} links")  # fmt: skip
    for link in found:
        reasons = sorted((link["reasons"] or {}).items(),
                         key=lambda item: -abs(item[1].get("weight", 0) or 0))[:3]  # fmt: skip
        table.add_row(
            link["id"], link["kind"], link["status"],
            f"{link['probability']:.3f}" if link["probability"] is not None else "",
            f"{link['namespace_a']}:{link['value_a']}", f"{link['namespace_b']}:{link['value_b']}",
            ", ".join(f"{name} {item.get('level', '')}" for name, item in reasons),
        )  # fmt: skip
    console.print(table)


def _decide(action: str, link_id: str, note: str | None, data_dir: Path | None) -> None:
    result = _identity(action, {"id": link_id, "note": note}, data_dir)
    changed = ""
    if "profiles_before" in result:
        changed = (f"; {len(result['profiles_before'])} profile(s) became "
                   f"{len(result['profiles_after'])}")  # fmt: skip
    console.print(f"link {result['id']} is {result['status']}{changed}")


@identity_app.command("accept")
def identity_accept(
    link_id: Annotated[str, typer.Argument(help="A link waiting for review.")],
    note: Annotated[str | None, typer.Option(help="Why, for the audit.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Accept a link from the review queue: its profiles are merged."""
    _decide("accept", link_id, note, data_dir)


@identity_app.command("reject")
def identity_reject(
    link_id: Annotated[str, typer.Argument(help="A link waiting for review.")],
    note: Annotated[str | None, typer.Option(help="Why, for the audit.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Reject a link from the review queue; it is not proposed again."""
    _decide("reject", link_id, note, data_dir)


@identity_app.command("undo")
def identity_undo(
    link_id: Annotated[str, typer.Argument(help="An active link.")],
    note: Annotated[str | None, typer.Option(help="Why, for the audit.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Undo a link: the profiles it joined are split again."""
    _decide("undo", link_id, note, data_dir)


@identity_app.command("dry-run")
def identity_dry_run(
    rules: Annotated[Path, typer.Argument(help="A TOML file holding an [identity] table.")],
    data_dir: DataDir = None,
) -> None:
    """Show what the identity rules in a file would do to today's profiles."""
    import tomllib

    try:
        proposed = tomllib.loads(rules.read_text()).get("identity", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _fail(f"cannot read {rules}: {exc}")
    report = _identity("dry-run", proposed, data_dir)
    console.print(
        f"profiles: {report['profiles_now']:,} now, {report['profiles_after']:,} after; "
        f"{report['merges']:,} would merge, {report['splits']:,} would split; "
        f"{report['identifiers_unlinked']:,} identifiers would no longer link"
    )


@identity_app.command("rebuild")
def identity_rebuild(data_dir: DataDir = None) -> None:
    """Resolve every stored event again from the raw store."""
    result = _identity("rebuild", None, data_dir)
    console.print(f"rebuilt from {result['events']:,} events")


@traits_app.command("recompute")
def traits_recompute(data_dir: DataDir = None) -> None:
    """Recompute every profile's traits and computed traits (moves time windows)."""
    _identity("recompute", None, data_dir)
    console.print("traits recomputed")


def main() -> None:
    app()


# -- import ------------------------------------------------------------------------------


class ImportKind(StrEnum):
    profiles = "profiles"
    events = "events"


class ImportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


@app.command("import")
def import_file(
    file: Annotated[
        Path, typer.Argument(help="CSV, JSONL or Parquet file; CSV and JSONL may be gzipped.")
    ],
    source: Annotated[str, typer.Option("--source", help="Source to import into.")],
    kind: Annotated[
        ImportKind,
        typer.Option(
            "--kind",
            help="profiles: one identify a row; events: one track a row.",
            case_sensitive=False,
        ),
    ],  # fmt: skip
    format: Annotated[
        ImportFormat | None,
        typer.Option("--format", help="File format (default: from the extension)."),
    ] = None,
    user_id_column: Annotated[
        str | None, typer.Option("--user-id-column", help="Column holding the userId.")
    ] = None,
    anonymous_id_column: Annotated[
        str | None, typer.Option("--anonymous-id-column", help="Column holding the anonymousId.")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Event name for every row (events).")
    ] = None,
    event_column: Annotated[
        str | None, typer.Option("--event-column", help="Column holding the event name.")
    ] = None,
    timestamp_column: Annotated[
        str | None,
        typer.Option(
            "--timestamp-column",
            help="Column holding when it happened: ISO 8601 or epoch milliseconds "
            "(default: the time of the import).",
        ),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="TARGET=COLUMN",
            help="Import COLUMN as the trait/property TARGET (a.b nests); repeatable.",
        ),
    ] = None,  # fmt: skip
    drop: Annotated[
        list[str] | None,
        typer.Option("--drop", metavar="COLUMN", help="Leave COLUMN out; repeatable."),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="Where rejected rows go (default: FILE.rejects.jsonl)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Import profiles or events from a file; rows already imported are not added again."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from onefold.collect.importer import ImportFailed, ImportSpec, parse_mapping, run_import

    try:
        spec = ImportSpec(
            kind=kind.value,
            user_id_column=user_id_column,
            anonymous_id_column=anonymous_id_column,
            event=event,
            event_column=event_column,
            timestamp_column=timestamp_column,
            mapping=parse_mapping(mapping),
            drop=frozenset(drop or ()),
        )
        spec.validate()
    except ImportFailed as exc:
        _fail(escape(exc.message))
    if not file.is_file():
        _fail(escape(f"no such file: {file}"))
    client = _client(data_dir)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows, {task.fields[rejected]:,} rejected"),
        TimeRemainingColumn(),
        console=err,
    )
    tasks = []  # the bar appears with the first progress, not before a failed start

    def show(progress) -> None:
        if not tasks:
            tasks.append(bar.add_task(f"Importing {escape(file.name)}", rows=0, rejected=0))
        (task,) = tasks
        bar.update(
            task, completed=progress.done, total=progress.total or None,
            rows=progress.rows, rejected=progress.rejected,
        )  # fmt: skip

    try:
        with bar:
            result = run_import(
                client, source, file, spec,
                format=format.value if format else None, rejects_path=rejects, on_progress=show,
                max_message_bytes=_settings(data_dir).limits.max_message_bytes,
            )  # fmt: skip
    except ImportFailed as exc:
        _fail(escape(exc.message))
    except ClientError as exc:
        if exc.code == "source_not_found":
            _fail(escape(f"{exc.message}; create it with `onefold sources create {source}`"))
        _fail(escape(exc.message))
    finally:
        client.close()
    console.print(
        f"Imported {escape(result.file.name)} into [bold]{escape(source)}[/bold]: "
        f"{result.rows:,} rows read, "
        f"{result.accepted:,} accepted, {result.rejected:,} rejected",
        soft_wrap=True,
    )
    console.print("(rows an earlier import already stored are not added again)", style="dim")
    if result.rejected:
        err.print(
            f"[yellow]warning:[/yellow] {result.rejected:,} rows were rejected; their row "
            f"numbers and reasons are in {result.rejects_path}",
            soft_wrap=True,
        )

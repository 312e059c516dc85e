"""The ``onefold`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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
    err.print(f"[red]error:[/red] {message}")
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


def main() -> None:
    app()

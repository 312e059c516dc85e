"""The ``onefold`` command, embedded and against a running server."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from onefold.interfaces.cli import app
from onefold.settings import Settings
from tests.server import ADMIN_TOKEN, Server

runner = CliRunner()


def test_sources_commands_without_a_server(tmp_path):
    data = str(tmp_path / "data")
    created = runner.invoke(app, ["sources", "create", "web-shop", "--type", "web",
                                  "--data-dir", data])  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "wk_" in created.output
    listed = runner.invoke(app, ["sources", "list", "--data-dir", data])
    assert "web-shop" in listed.output
    disabled = runner.invoke(app, ["sources", "disable", "web-shop", "--data-dir", data])
    assert "disabled" in disabled.output
    again = runner.invoke(app, ["sources", "create", "web-shop", "--data-dir", data])
    assert again.exit_code == 1
    assert "already exists" in again.output
    unknown = runner.invoke(app, ["sources", "disable", "nope", "--data-dir", data])
    assert unknown.exit_code == 1


def test_sources_commands_go_through_a_running_server(tmp_path):
    server = Server(tmp_path / "data").start()
    try:
        env = {**os.environ, "ONEFOLD_ADMIN_TOKEN": ADMIN_TOKEN}
        data = str(tmp_path / "data")
        result = subprocess.run(
            [sys.executable, "-m", "onefold", "sources", "create", "crm", "--type", "crm",
             "--data-dir", data],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        with server.admin as admin:
            names = [s["name"] for s in admin.get("/api/v1/sources").json()]
        assert names == ["crm"]
    finally:
        server.stop()


def test_settings_from_file_and_environment(tmp_path, monkeypatch):
    config = tmp_path / "onefold.toml"
    config.write_text(
        'port = 9001\ndata_dir = "/srv/onefold"\n[limits]\nmax_message_bytes = 1000\n'
    )
    monkeypatch.setenv("ONEFOLD_CONFIG", str(config))
    monkeypatch.setenv("ONEFOLD_PORT", "9002")
    settings = Settings()
    assert settings.port == 9002
    assert str(settings.data_dir) == "/srv/onefold"
    assert settings.limits.max_message_bytes == 1000
    assert settings.limits.max_batch_bytes == 500 * 1024


def test_serve_refuses_a_data_directory_in_use(tmp_path):
    server = Server(tmp_path / "data").start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "onefold", "serve", "--data-dir", str(tmp_path / "data"),
             "--port", "1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1
        assert "in use by another Onefold process" in " ".join(result.stderr.split())
    finally:
        server.stop()


def test_profiles_show_prints_identities_merges_and_events(tmp_path):
    data = str(tmp_path / "data")
    created = runner.invoke(app, ["sources", "create", "web", "--data-dir", data])
    key = created.output.split("write key:")[1].split()[0]
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"anon": "dev-1", "user": "", "event": "Product Viewed"}\n'
        '{"anon": "dev-1", "user": "jane", "event": "Signed Up"}\n'
    )
    imported = runner.invoke(app, [
        "import", str(events), "--source", "web", "--kind", "events", "--data-dir", data,
        "--anonymous-id-column", "anon", "--user-id-column", "user", "--event-column", "event",
    ])  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert key.startswith("wk_")
    shown = runner.invoke(app, ["profiles", "show", "user_id:jane", "--data-dir", data])
    assert shown.exit_code == 0, shown.output
    assert "dev-1" in shown.output
    assert "Signed Up" in shown.output and "Product Viewed" in shown.output
    missing = runner.invoke(app, ["profiles", "show", "email:nobody@example.com",
                                  "--data-dir", data])  # fmt: skip
    assert missing.exit_code == 1
    assert "no profile" in missing.output


def test_identity_commands_embedded(tmp_path):
    data = str(tmp_path / "data")
    runner.invoke(app, ["sources", "create", "shop", "--data-dir", data])
    rows = tmp_path / "walk-ins.csv"
    rows.write_text("anon,email,name\nw1,desk@example.com,Eve\nw2,desk@example.com,Max\n")
    imported = runner.invoke(app, [
        "import", str(rows), "--source", "shop", "--kind", "profiles", "--data-dir", data,
        "--anonymous-id-column", "anon",
    ])  # fmt: skip
    assert imported.exit_code == 0, imported.output
    health = runner.invoke(app, ["identity", "health", "--over", "2", "--data-dir", data])
    assert health.exit_code == 0, health.output
    assert "1 profiles hold more than 2" in " ".join(health.output.split())
    blocked = runner.invoke(app, ["identity", "block", "email:desk@example.com",
                                  "--reason", "front desk", "--data-dir", data])  # fmt: skip
    assert blocked.exit_code == 0, blocked.output
    assert "1 profile(s) became 2" in blocked.output
    rules = tmp_path / "rules.toml"
    rules.write_text('[identity.namespaces.anonymous_id]\npriority = 90\npaths = ["anonymousId"]\n')
    dry = runner.invoke(app, ["identity", "dry-run", str(rules), "--data-dir", data])
    assert dry.exit_code == 0, dry.output
    assert "2 now, 2 after" in dry.output
    assert runner.invoke(app, ["identity", "rebuild", "--data-dir", data]).exit_code == 0
    assert runner.invoke(app, ["traits", "recompute", "--data-dir", data]).exit_code == 0
    bad = runner.invoke(app, ["identity", "block", "nonsense", "--reason", "x", "--data-dir", data])
    assert bad.exit_code == 1

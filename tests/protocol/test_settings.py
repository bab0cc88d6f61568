"""A config key is one entry in ``protocol.settings.KEYS``: choo's loader, the
daemon's command line and options, and the workers take their defaults there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from choo import config
from choo.orchestrator.worker import WorkerSettings
from choo_daemon.__main__ import command_line
from choo_daemon.daemon import DaemonOptions
from protocol import settings
from protocol.home import Home
from protocol.settings import KEYS, default


def test_the_daemon_command_line_reads_its_defaults_from_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (
        ("daemon.port", 4321),
        ("daemon.host", "127.0.0.2"),
        ("history.retention_days", 7),
    ):
        monkeypatch.setitem(KEYS, name, dataclasses.replace(KEYS[name], default=value))
    args = command_line().parse_args([])
    assert (args.port, args.host, args.retention_days) == (4321, "127.0.0.2", 7)


def test_daemon_options_and_worker_settings_have_the_tables_defaults(tmp_path: Path) -> None:
    options = DaemonOptions(home=Home(tmp_path))
    assert (options.host, options.port) == (default("daemon.host"), default("daemon.port"))
    assert options.retention_days == (default("history.retention_days") or None)
    fields = {f.name: f.default for f in dataclasses.fields(WorkerSettings)}
    assert fields["attempts"] == default("attempts")
    assert fields["provider_timeout"] == default("provider.timeout")
    assert fields["backpressure_timeout"] == default("backpressure.timeout")


def test_a_new_key_is_loaded_with_its_default_and_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = settings.Key("demo.level", "int", 5, "a key added in one place")
    monkeypatch.setitem(KEYS, key.name, key)
    monkeypatch.setattr(config, "global_config_path", lambda: tmp_path / "none.yaml")
    assert config.load(tmp_path, env={}).values["demo.level"] == 5
    assert config.load(tmp_path, env={"CHOO_DEMO_LEVEL": "9"}).values["demo.level"] == 9


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert settings.is_loopback(host) is loopback
    assert (settings.exposed_warning(host) is None) is loopback


def test_the_daemons_keys_and_retention_are_the_users() -> None:
    user = {name for name, key in KEYS.items() if key.scope == settings.USER}
    assert user == {
        "daemon.host",
        "daemon.port",
        "daemon.auto_start",
        "history.retention_days",
        "export.otlp.endpoint",
        "export.otlp.headers",
    }
    assert settings.Key("demo.level", "int", 5, "a new key").scope == settings.REPO

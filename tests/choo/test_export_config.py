"""export.otlp.*: user-scope keys that reach the daemon in its environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from choo import daemonctl
from choo.config import ConfigError, load
from choo_daemon.outbox import ENDPOINT_ENV, HEADERS_ENV, OtlpTarget, target_from_env
from protocol.home import Home


@pytest.fixture
def global_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    path = xdg / "choo" / "config.yaml"
    path.parent.mkdir(parents=True)
    return path


def test_the_user_config_sets_the_export_endpoint_and_headers(
    global_file: Path, tmp_path: Path
) -> None:
    global_file.write_text(
        "export:\n  otlp:\n    endpoint: http://127.0.0.1:6006\n"
        "    headers: {authorization: Bearer k1, x-team: infra}\n"
    )
    config = load(tmp_path, env={})
    assert config["export.otlp.endpoint"] == "http://127.0.0.1:6006"
    assert config["export.otlp.headers"] == {"authorization": "Bearer k1", "x-team": "infra"}
    assert config.warnings == []


def test_a_repository_cannot_turn_export_on(tmp_path: Path) -> None:
    (tmp_path / ".choo.yaml").write_text(
        "export.otlp.endpoint: http://evil.example:4318\nexport.otlp.headers: {a: b}\n"
    )
    config = load(tmp_path, env={})
    assert config["export.otlp.endpoint"] is None
    assert config["export.otlp.headers"] == {}
    assert len(config.warnings) == 2
    assert all("is a user setting" in w and ".choo.yaml" in w for w in config.warnings)


def test_the_environment_sets_export(tmp_path: Path) -> None:
    env = {ENDPOINT_ENV: "https://otlp.example", HEADERS_ENV: '{"api_key": "s"}'}
    config = load(tmp_path, env=env)
    assert config["export.otlp.endpoint"] == "https://otlp.example"
    assert config["export.otlp.headers"] == {"api_key": "s"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("export.otlp.endpoint: localhost:4318\n", "export.otlp.endpoint must be an http://"),
        ("export.otlp.headers: {x-n: 1}\n", "export.otlp.headers entry 'x-n' must map"),
        ("export.otlp.headers: [a]\n", "export.otlp.headers must be a mapping"),
    ],
)
def test_an_unusable_export_setting_names_the_file_and_key(
    global_file: Path, tmp_path: Path, text: str, problem: str
) -> None:
    global_file.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load(tmp_path, env={})
    assert str(global_file) in str(caught.value)


def test_the_daemon_gets_export_in_its_environment_not_its_command_line(
    global_file: Path, tmp_path: Path, home: Home
) -> None:
    global_file.write_text(
        "export.otlp.endpoint: http://127.0.0.1:6006\nexport.otlp.headers: {api_key: s3cret}\n"
    )
    settings = daemonctl.DaemonSettings.from_config(load(tmp_path, env={}))
    assert "s3cret" not in " ".join(daemonctl.daemon_command(home, settings))
    env = daemonctl.daemon_env(settings)
    assert json.loads(env[HEADERS_ENV]) == {"api_key": "s3cret"}
    # What the daemon makes of it.
    assert target_from_env(env) == OtlpTarget("http://127.0.0.1:6006", {"api_key": "s3cret"})


def test_with_no_endpoint_configured_the_daemon_exports_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = daemonctl.DaemonSettings.from_config(load(tmp_path, env={}))
    monkeypatch.setenv(ENDPOINT_ENV, "http://stale.example")  # not what the config says
    env = daemonctl.daemon_env(settings)
    assert ENDPOINT_ENV not in env and target_from_env(env) is None


def test_the_daemon_and_the_config_name_the_same_variables() -> None:
    assert (daemonctl.EXPORT_ENDPOINT_ENV, daemonctl.EXPORT_HEADERS_ENV) == (
        ENDPOINT_ENV,
        HEADERS_ENV,
    )

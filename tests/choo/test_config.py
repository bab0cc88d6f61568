"""Configuration: global file, repository file, CHOO_* environment, flags; warnings and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from choo.config import ConfigError, global_config_path, load
from protocol.settings import default
from tests.choo.support import make_repo, plan_md, run_choo, task_md


@pytest.fixture
def global_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    path = xdg / "choo" / "config.yaml"
    path.parent.mkdir(parents=True)
    return path


def test_the_global_file_lives_under_xdg_config_home(global_file: Path) -> None:
    assert global_config_path() == global_file


def test_later_sources_win(global_file: Path, tmp_path: Path) -> None:
    global_file.write_text(
        "parallelism: 2\nattempts: 5\nprovider:\n  timeout: 10\nhistory.retention_days: 7\n"
        "daemon:\n  port: 9000\n"
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".choo.yaml").write_text("parallelism: 3\nattempts: 4\n")
    env = {"CHOO_PARALLELISM": "6", "CHOO_ATTEMPTS": "2", "UNRELATED": "x"}
    config = load(repo, env=env).apply_flags({"parallelism": 8, "provider.name": None})

    assert config["parallelism"] == 8
    assert config.sources["parallelism"] == "flag"
    assert config["attempts"] == 2
    assert config.sources["attempts"] == "env CHOO_ATTEMPTS"
    assert config["daemon.port"] == 9000
    assert config.sources["daemon.port"] == str(global_file)
    assert config["provider.timeout"] == 10.0
    assert config["history.retention_days"] == 7
    assert config.sources["provider.timeout"] == str(global_file)
    assert config["provider.name"] == "claude", "a flag left unset changes nothing"
    assert config.sources["provider.name"] == "default"
    assert config.warnings == []


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, env={})
    assert config["daemon.port"] == 8080
    assert config["daemon.host"] == "127.0.0.1"
    assert config["daemon.auto_start"] is True
    assert config["history.enabled"] is True
    assert config["history.retention_days"] == 90
    assert config["parallelism"] == 4
    assert config["attempts"] == 3


def test_environment_values_are_parsed(tmp_path: Path) -> None:
    env = {
        "CHOO_DAEMON_AUTO_START": "false",
        "CHOO_HISTORY_ENABLED": "no",
        "CHOO_PROVIDER_TIMEOUT": "2.5",
        "CHOO_PROVIDER_COMMAND": "python3 agent.py '{prompt_file}'",
    }
    config = load(tmp_path, env=env)
    assert config["daemon.auto_start"] is False
    assert config["history.enabled"] is False
    assert config["provider.timeout"] == 2.5
    assert config["provider.command"] == ["python3", "agent.py", "{prompt_file}"]


def test_provider_shorthand_and_command_list(tmp_path: Path) -> None:
    (tmp_path / ".choo.yaml").write_text(
        "provider: codex\n'provider.command': [python3, agent.py, '{prompt}']\n"
    )
    config = load(tmp_path, env={})
    assert config["provider.name"] == "codex"
    assert config["provider.command"] == ["python3", "agent.py", "{prompt}"]


def test_an_unknown_key_warns_with_file_key_and_closest_key(tmp_path: Path) -> None:
    path = tmp_path / ".choo.yaml"
    path.write_text("paralelism: 2\ndaemon:\n  prot: 1\nzzz_nothing_like_it: 1\n")
    config = load(tmp_path, env={})
    assert config["parallelism"] == 4
    assert config.warnings == [
        f"{path}: unknown key 'paralelism' (did you mean 'parallelism'?); it is ignored",
        f"{path}: unknown key 'daemon.prot' (did you mean 'daemon.port'?); it is ignored",
        f"{path}: unknown key 'zzz_nothing_like_it'; it is ignored",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("parallelism: four\n", "parallelism must be an integer, found the text 'four'"),
        ("parallelism: true\n", "parallelism must be an integer, found the boolean true"),
        ("daemon:\n  auto_start: 1\n", "daemon.auto_start must be true or false, found the number"),
        ("provider.timeout: [1]\n", "provider.timeout must be a number, found a list"),
        ("parallelism: 0\n", "parallelism must be at least 1, found 0"),
        ("daemon.port: 70000\n", "daemon.port must be a port number from 0 to 65535"),
        ("provider: {name: gpt}\n", "provider.name must be one of claude, codex, command"),
    ],
)
def test_a_wrong_value_is_an_error_naming_file_key_expected_and_found(
    tmp_path: Path, global_file: Path, text: str, expected: str
) -> None:
    # A user key is read from the user's file only (a repository's is ignored).
    path = global_file if text.startswith("daemon") else tmp_path / ".choo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_a_wrong_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env CHOO_PARALLELISM: parallelism must be an integer"):
        load(tmp_path, env={"CHOO_PARALLELISM": "many"})


def test_a_file_that_is_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / ".choo.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(tmp_path, env={})
    path.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        load(tmp_path, env={})


# -- user settings: not from a repository ------------------------------------------


def test_a_repository_cannot_set_the_users_keys(global_file: Path, tmp_path: Path) -> None:
    path = tmp_path / ".choo.yaml"
    path.write_text(
        "daemon: {host: 0.0.0.0, port: 9999, auto_start: false}\n"
        "history: {retention_days: 1, enabled: false}\nparallelism: 2\n"
    )
    config = load(tmp_path, env={})
    for key in ("daemon.host", "daemon.port", "daemon.auto_start", "history.retention_days"):
        assert (config[key], config.sources[key]) == (default(key), "default"), key
    assert (config["history.enabled"], config["parallelism"]) == (False, 2), "repo keys are set"
    assert config.warnings == [
        f"{path}: {key} is a user setting, which a repository may not set; it is ignored. "
        f"Set it in the user config {global_file} instead, or with {var} or a flag"
        for key, var in (
            ("daemon.host", "CHOO_DAEMON_HOST"),
            ("daemon.port", "CHOO_DAEMON_PORT"),
            ("daemon.auto_start", "CHOO_DAEMON_AUTO_START"),
            ("history.retention_days", "CHOO_HISTORY_RETENTION_DAYS"),
        )
    ]


def test_a_repositorys_user_key_is_ignored_even_when_its_value_is_wrong(tmp_path: Path) -> None:
    (tmp_path / ".choo.yaml").write_text("daemon.port: web\nhistory.retention_days: -1\n")
    config = load(tmp_path, env={})
    assert config["daemon.port"] == default("daemon.port")
    assert len(config.warnings) == 2


def test_the_user_config_the_environment_and_flags_set_the_users_keys(
    global_file: Path, tmp_path: Path
) -> None:
    global_file.write_text(
        "daemon: {host: 0.0.0.0, port: 9001, auto_start: false}\nhistory.retention_days: 3\n"
    )
    (tmp_path / ".choo.yaml").write_text("daemon.host: 127.0.0.1\n")
    config = load(tmp_path, env={"CHOO_DAEMON_PORT": "9002"})
    assert config["daemon.host"] == "0.0.0.0", "a non-loopback address from the user config"
    assert config.sources["daemon.host"] == str(global_file)
    assert (config["daemon.port"], config.sources["daemon.port"]) == (9002, "env CHOO_DAEMON_PORT")
    assert (config["daemon.auto_start"], config["history.retention_days"]) == (False, 3)
    assert len(config.warnings) == 1 and "daemon.host is a user setting" in config.warnings[0]
    flagged = load(tmp_path, env={}).apply_flags({"daemon.host": "::"})
    assert (flagged["daemon.host"], flagged.sources["daemon.host"]) == ("::", "flag")


@pytest.mark.parametrize("host", ["127.0.0.2", "::1", "localhost"])
def test_the_environment_sets_a_loopback_host(tmp_path: Path, host: str) -> None:
    config = load(tmp_path, env={"CHOO_DAEMON_HOST": host})
    assert (config["daemon.host"], config.warnings) == (host, [])


def test_the_environment_cannot_bind_a_non_loopback_address(
    global_file: Path, tmp_path: Path
) -> None:
    global_file.write_text("daemon.host: 127.0.0.3\n")
    config = load(tmp_path, env={"CHOO_DAEMON_HOST": "0.0.0.0"})
    assert (config["daemon.host"], config.sources["daemon.host"]) == ("127.0.0.3", str(global_file))
    assert config.warnings == [
        "env CHOO_DAEMON_HOST: '0.0.0.0' is not a loopback address, and one is taken only "
        f"from the user config {global_file} or a flag (`choo daemon start --host`); "
        "it is ignored"
    ]


def test_explain_names_each_keys_scope(tmp_path: Path) -> None:
    scopes = {row["key"]: row["scope"] for row in load(tmp_path, env={}).explain()}
    user = {"daemon.host", "daemon.port", "daemon.auto_start", "history.retention_days"}
    user |= {"export.otlp.endpoint", "export.otlp.headers"}
    assert {k for k, scope in scopes.items() if scope == "user"} == user
    assert set(scopes.values()) == {"user", "repo"}


# -- through the CLI -------------------------------------------------------------

PLAN = {
    "u/IMPLEMENTATION_PLAN.md": plan_md(),
    "u/01-task.md": task_md(1, "Quick"),
}


def test_cli_flags_beat_environment_beat_repo_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PLAN, config={"parallelism": 3})
    env = {**os.environ, "CHOO_PARALLELISM": "5"}
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root, env=env)
    assert result.returncode == 0, result.stderr
    assert "parallelism 5" in result.stdout
    result = run_choo("run", "--no-daemon", "-p", "2", "specs/tasks", cwd=repo.root, env=env)
    assert result.returncode == 0, result.stderr
    assert "parallelism 2" in result.stdout


def test_cli_reports_a_bad_config_and_runs_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PLAN)
    (repo.root / ".choo.yaml").write_text("parallelism: lots\n")
    before = repo.snapshot()
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert result.returncode == 2
    assert f"{repo.root / '.choo.yaml'}: parallelism must be an integer" in result.stderr
    assert repo.snapshot() == before
    assert repo.agent_log() == []


def test_cli_prints_unknown_key_warnings_and_goes_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PLAN, config={"paralelism": 2})
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert "unknown key 'paralelism' (did you mean 'parallelism'?)" in result.stderr
    assert repo.status_of("u/01-task.md") == "complete"


def test_a_warning_shows_its_text_as_it_is_not_as_markup(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PLAN, config={"[bold]x[/bold]": 2})
    result = run_choo("run", "--no-daemon", "specs/tasks", cwd=repo.root)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "unknown key '[bold]x[/bold]'" in result.stderr


def test_config_show_never_prints_the_export_headers_values(
    global_file: Path, tmp_path: Path
) -> None:
    key = "Bearer sk-live-0123456789abcdefghij"
    global_file.write_text(
        "export:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n"
        f"    headers:\n      authorization: {key}\n      x-team: blue\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    shown = run_choo("config", "show", "--json", cwd=tmp_path, env=env)
    table = run_choo("config", "show", cwd=tmp_path, env=env)
    assert shown.returncode == 0 == table.returncode, shown.stderr + table.stderr
    for out in (shown.stdout, table.stdout):
        assert "sk-live" not in out and "blue" not in out
    rows = {row["key"]: row["value"] for row in json.loads(shown.stdout)["keys"]}
    assert rows["export.otlp.headers"] == {"authorization": "(hidden)", "x-team": "(hidden)"}
    assert rows["export.otlp.endpoint"] == "http://127.0.0.1:4318"
    # The daemon still gets them whole.
    assert load(tmp_path, env={})["export.otlp.headers"]["authorization"] == key

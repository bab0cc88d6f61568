"""The price table: defaults, lookup by model name, estimates, and the
`prices` setting (merged over the defaults, checked entry by entry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from choo.config import ConfigError, load
from protocol.prices import DEFAULT_PRICES, estimate_cost, price_of


@pytest.fixture(autouse=True)
def no_global_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_dated_and_suffixed_names_find_their_model() -> None:
    assert price_of("claude-sonnet-4-5-20250929") == DEFAULT_PRICES["claude-sonnet-4-5"]
    assert price_of("claude-opus-4-7[1m]") == DEFAULT_PRICES["claude-opus-4-7"]
    assert price_of("claude-opus-4-20250514") == DEFAULT_PRICES["claude-opus-4"]
    assert price_of("gpt-5.1-codex-max") == DEFAULT_PRICES["gpt-5.1-codex"]
    assert price_of("gpt-5-codex") == DEFAULT_PRICES["gpt-5-codex"]


def test_unknown_model_costs_none_not_zero() -> None:
    assert price_of("llama-local") is None
    assert price_of("gpt-5x") is None  # a prefix match needs a dash after the known name
    assert estimate_cost("llama-local", input_tokens=10, output_tokens=10) is None
    assert estimate_cost(None, input_tokens=10, output_tokens=10) is None
    assert estimate_cost("gpt-5", input_tokens=None, output_tokens=None) is None


def test_estimate_prices_each_kind_of_token() -> None:
    cost = estimate_cost(
        "claude-sonnet-4-5",
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=1_000_000,
        cache_write_tokens=1_000_000,
    )
    assert cost == pytest.approx(3 + 15 + 0.3 + 3.75)


def test_a_users_table_merges_over_the_defaults(tmp_path: Path) -> None:
    (tmp_path / ".choo.yaml").write_text(
        "prices:\n"
        "  my-model: {input: 1, output: 2, cache_read: 0.1, cache_write: 1}\n"
        "  gpt-5: {input: 9, output: 9, cache_read: 9, cache_write: 9}\n"
    )
    prices = load(tmp_path, env={})["prices"]
    assert prices["my-model"] == {"input": 1, "output": 2, "cache_read": 0.1, "cache_write": 1}
    assert prices["gpt-5"]["input"] == 9
    assert prices["claude-haiku-4-5"] == DEFAULT_PRICES["claude-haiku-4-5"]
    assert estimate_cost("my-model", input_tokens=10**6, output_tokens=0, prices=prices) == 1


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("prices: 3\n", "prices must be a mapping"),
        ("prices:\n  gpt-5: 3\n", "entry 'gpt-5' must map input"),
        ("prices:\n  gpt-5: {inptu: 1}\n", "entry 'gpt-5' has an unknown key 'inptu'"),
        (
            "prices:\n  gpt-5: {input: -1, output: 1, cache_read: 0, cache_write: 1}\n",
            "entry 'gpt-5': input must be a number",
        ),
        ("prices:\n  gpt-5: {input: 1, output: x, cache_read: 0, cache_write: 1}\n", "output must"),
        ("prices:\n  gpt-5: {input: 1}\n", "entry 'gpt-5' misses output, cache_read, cache_write"),
    ],
)
def test_a_bad_table_stops_with_the_file_key_and_entry(
    tmp_path: Path, yaml: str, message: str
) -> None:
    (tmp_path / ".choo.yaml").write_text(yaml)
    with pytest.raises(ConfigError, match=message) as error:
        load(tmp_path, env={})
    assert str(tmp_path / ".choo.yaml") in str(error.value)


def test_the_table_from_the_environment(tmp_path: Path) -> None:
    env = {"CHOO_PRICES": '{"m": {"input": 1, "output": 1, "cache_read": 1, "cache_write": 1}}'}
    assert load(tmp_path, env=env)["prices"]["m"]["input"] == 1
    with pytest.raises(ConfigError, match="env CHOO_PRICES: prices must be a mapping"):
        load(tmp_path, env={"CHOO_PRICES": "[1, 2"})


def test_provider_output_takes_the_three_formats(tmp_path: Path) -> None:
    assert load(tmp_path, env={})["provider.output"] == "text"
    assert (
        load(tmp_path, env={"CHOO_PROVIDER_OUTPUT": "codex-json"})["provider.output"]
        == "codex-json"
    )
    with pytest.raises(ConfigError, match=r"provider\.output must be one of claude-stream"):
        load(tmp_path, env={"CHOO_PROVIDER_OUTPUT": "xml"})

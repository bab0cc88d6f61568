"""Prices of agent models, to estimate what an attempt cost when its agent
does not say (Codex never does).

USD per million tokens, per model: ``input`` (uncached input), ``output``,
``cache_read`` (input served from the prompt cache) and ``cache_write``
(input written to it). The defaults were read on 2026-11-30 from
platform.claude.com/docs/en/about-claude/pricing (Claude, 5-minute cache
writes) and developers.openai.com/api/docs/models (OpenAI; OpenAI charges
no premium for cache writes, so ``cache_write`` is the input price). The
``prices`` setting merges a user's table over these (``protocol.settings``).

A model is looked up by its exact name, then by the longest name in the
table that starts it (``claude-sonnet-4-5-20250929`` is priced as
``claude-sonnet-4-5``). An unknown model has no price: its cost is None,
never 0. Pure data and arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")

PriceTable = Mapping[str, Mapping[str, float]]


def _claude(input_: float, output: float) -> dict[str, float]:
    # Anthropic's cache multipliers for these models: reads 0.1x, 5-minute writes 1.25x.
    return {
        "input": input_,
        "output": output,
        "cache_read": input_ / 10,
        "cache_write": input_ * 1.25,
    }


def _openai(input_: float, cached: float, output: float) -> dict[str, float]:
    return {"input": input_, "output": output, "cache_read": cached, "cache_write": input_}


DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4-0": _claude(15.0, 75.0),
    "claude-opus-4-1": _claude(15.0, 75.0),
    "claude-opus-4-5": _claude(5.0, 25.0),
    "claude-opus-4-6": _claude(5.0, 25.0),
    "claude-opus-4-7": _claude(5.0, 25.0),
    "claude-opus-4-8": _claude(5.0, 25.0),
    "claude-opus-5": _claude(5.0, 25.0),
    "claude-sonnet-4-0": _claude(3.0, 15.0),
    "claude-sonnet-4-5": _claude(3.0, 15.0),
    "claude-sonnet-4-6": _claude(3.0, 15.0),
    "claude-sonnet-5": _claude(2.0, 10.0),
    "claude-haiku-4-5": _claude(1.0, 5.0),
    "gpt-5": _openai(1.25, 0.125, 10.0),
    "gpt-5-codex": _openai(1.25, 0.125, 10.0),
    "gpt-5-mini": _openai(0.25, 0.025, 2.0),
    "gpt-5.1": _openai(1.25, 0.125, 10.0),
    "gpt-5.1-codex": _openai(1.25, 0.125, 10.0),
    "gpt-5.1-codex-mini": _openai(0.25, 0.025, 2.0),
    "gpt-5.2": _openai(1.75, 0.175, 14.0),
    "gpt-5.2-codex": _openai(1.75, 0.175, 14.0),
    "gpt-5.3-codex": _openai(1.75, 0.175, 14.0),
}
# The names Claude Code also answers to for its first Claude 4 models.
DEFAULT_PRICES["claude-opus-4"] = DEFAULT_PRICES["claude-opus-4-0"]
DEFAULT_PRICES["claude-sonnet-4"] = DEFAULT_PRICES["claude-sonnet-4-0"]


def check_table(value: Any) -> str | None:
    """What is wrong with a price table (naming the entry), or None."""
    if not isinstance(value, Mapping):
        return "must be a mapping of model names to prices"
    for model, entry in value.items():
        if not isinstance(model, str) or not model:
            return f"has a model name that is not text: {model!r}"
        if not isinstance(entry, Mapping):
            return f"entry {model!r} must map {', '.join(PRICE_FIELDS)} to numbers"
        for key, price in entry.items():
            if key not in PRICE_FIELDS:
                return (
                    f"entry {model!r} has an unknown key {key!r} (known: {', '.join(PRICE_FIELDS)})"
                )
            if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                return (
                    f"entry {model!r}: {key} must be a number of USD per million tokens >= 0, "
                    f"found {price!r}"
                )
        missing = [k for k in PRICE_FIELDS if k not in entry]
        if missing:
            return f"entry {model!r} misses {', '.join(missing)}"
    return None


def merge(user: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    """The defaults with ``user``'s entries over them (each entry whole)."""
    table = {model: dict(entry) for model, entry in DEFAULT_PRICES.items()}
    for model, entry in (user or {}).items():
        table[model] = {k: float(entry[k]) for k in PRICE_FIELDS}
    return table


def price_of(model: str | None, prices: PriceTable | None = None) -> Mapping[str, float] | None:
    """The prices of ``model``: exact name, else the longest table name it starts with."""
    if not model:
        return None
    table = DEFAULT_PRICES if prices is None else prices
    name = model.strip().lower()
    if name.endswith("]") and "[" in name:  # claude-opus-4-7[1m]: the context window, same price
        name = name[: name.rindex("[")]
    if name in table:
        return table[name]
    best = max((k for k in table if name.startswith(k + "-")), key=len, default=None)
    return table[best] if best is not None else None


def estimate_cost(
    model: str | None,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    prices: PriceTable | None = None,
) -> float | None:
    """USD for these tokens of ``model``; None if the model or the usage is unknown."""
    price = price_of(model, prices)
    if price is None or (input_tokens is None and output_tokens is None):
        return None
    total = (
        (input_tokens or 0) * price["input"]
        + (output_tokens or 0) * price["output"]
        + (cache_read_tokens or 0) * price["cache_read"]
        + (cache_write_tokens or 0) * price["cache_write"]
    )
    return total / 1_000_000

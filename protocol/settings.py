"""Settings: every key choo reads, with its type, default, help and check.

Pure data, no disk and no environment: ``choo.config`` loads the files,
``CHOO_*`` variables and flags against ``KEYS``; the daemon
(``python -m choo_daemon``) takes the defaults of its options from it
(``daemon.host``, ``daemon.port``, ``history.retention_days``), and the
orchestrator's workers theirs (``attempts``, ``provider.timeout``,
``backpressure.timeout``, ``provider.output``, ``prices``: the price table
of ``protocol.prices``). A new key is one entry here.

A key's ``scope`` says who may set it: ``"repo"`` keys any configuration
source, ``"user"`` keys (those of the per-user daemon, which serves every
repository's history) only the user's own config, ``CHOO_*`` variables and
flags, never a repository's ``.choo.yaml``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.prices import DEFAULT_PRICES, check_table

PROVIDERS = ("claude", "codex", "command")

# Who may set a key (Key.scope): any source, or the user only (not a repository).
REPO, USER = "repo", "user"


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # one of KINDS
    default: Any
    help: str
    check: Callable[[Any], str | None] = lambda _: None
    scope: str = REPO  # USER: not from a repository's .choo.yaml
    secret: bool = False  # its values (a table's: each entry's) are never printed


# Each kind of value, as a message says what it expects.
KINDS = {
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "argv": "a list of strings (or one string, split like a shell)",
    # A mapping whose entries merge over the default's (a user's entry replaces
    # the default entry of the same name; the others stay).
    "table": "a mapping (in an environment variable: YAML or JSON text)",
    # Named shell commands, in order: a list of {name, command} (the original
    # choo's format) or a mapping of name to command.
    "checks": "a list of {name, command} mappings, or a mapping of name to command",
}

# How a run's units share the repository: each in its own git worktree, or
# all in the main working tree (as before isolation, and outside git).
ISOLATIONS = ("worktree", "none")

# How the `command` provider's output is read (choo.orchestrator.agentstream).
OUTPUT_FORMATS = ("claude-stream", "codex-json", "text")


def _at_least(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be at least {n}"


def _more_than_zero(v: float) -> str | None:
    return None if v > 0 else "must be more than 0"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number from 0 to 65535"


def _output(v: str) -> str | None:
    return None if v in OUTPUT_FORMATS else f"must be one of {', '.join(OUTPUT_FORMATS)}"


def _isolation(v: str) -> str | None:
    return None if v in ISOLATIONS else f"must be one of {', '.join(ISOLATIONS)}"


def _http_url(v: str) -> str | None:
    ok = v.startswith(("http://", "https://")) and len(v) > len("https://")
    return None if ok else "must be an http:// or https:// URL"


def _text_table(v: dict[Any, Any]) -> str | None:
    for name, value in v.items():
        if not isinstance(name, str) or not isinstance(value, str):
            return f"entry {name!r} must map a header name to a text value (quote numbers)"
    return None


def _provider(v: str) -> str | None:
    return None if v in PROVIDERS else f"must be one of {', '.join(PROVIDERS)}"


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("daemon.port", "int", 8080, "web UI port of the daemon", _port, scope=USER),
        Key("daemon.host", "str", "127.0.0.1", "address the web UI binds", scope=USER),
        Key(
            "daemon.auto_start",
            "bool",
            True,
            "start the daemon when `choo run` needs it",
            scope=USER,
        ),
        Key("history.enabled", "bool", True, "record runs in the history"),
        Key(
            "export.otlp.endpoint",
            "str",
            None,
            "OTLP/HTTP endpoint the daemon sends each run to when it ends (unset: no export)",
            _http_url,
            scope=USER,
        ),
        Key(
            "export.otlp.headers",
            "table",
            {},
            "HTTP headers sent with each export, e.g. {authorization: Bearer ...}",
            _text_table,
            scope=USER,
            secret=True,
        ),
        Key(
            "history.retention_days",
            "int",
            90,
            "days a run is kept, counted from its start (0: keep every run)",
            _at_least(0),
            scope=USER,
        ),
        Key("parallelism", "int", 4, "units run at once", _at_least(1)),
        Key("attempts", "int", 3, "tries per task before it fails", _at_least(1)),
        Key("provider.name", "str", "claude", "agent that does each task", _provider),
        # The run's provider's model: claude and codex get it as --model, and
        # codex's cost is priced with it (its stream names no model).
        Key("provider.model", "str", None, "model the agent uses (default: the CLI's own)"),
        Key(
            "provider.command",
            "argv",
            None,
            "argv template of the `command` provider ({prompt}, {prompt_file})",
        ),
        Key(
            "provider.output",
            "str",
            "text",
            "how the `command` provider's output is read: claude-stream, codex-json or text",
            _output,
        ),
        Key(
            "provider.timeout",
            "number",
            1800.0,
            "seconds one agent call may take",
            _more_than_zero,
        ),
        Key(
            "backpressure.timeout",
            "number",
            600.0,
            "seconds a validation command may take",
            _more_than_zero,
        ),
        Key(
            "isolation",
            "str",
            "worktree",
            "worktree: each unit in its own git worktree; none: all in the main tree",
            _isolation,
        ),
        Key("worktree.setup", "str", None, "shell command run in each new unit worktree"),
        Key("worktree.teardown", "str", None, "shell command run before a worktree is removed"),
        Key(
            "git.land",
            "bool",
            False,
            "fast-forward the branch checked out at the start to a completed run's branch",
        ),
        Key(
            "baseline_checks",
            "checks",
            [],
            "commands run on the run branch after each merge, as [{name, command}]",
        ),
        Key(
            "plan.max_file_bytes",
            "int",
            1048576,
            "largest plan or task file read, in bytes (a bigger one is a problem of the plan)",
            _at_least(1),
        ),
        Key(
            "prices",
            "table",
            DEFAULT_PRICES,
            "USD per million tokens per model {input, output, cache_read, cache_write}, "
            "to estimate a cost the agent does not report",
            check_table,
        ),
    )
}


def default(name: str) -> Any:
    """The default of key ``name``."""
    return KEYS[name].default


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: 127.0.0.0/8,
    ::1 or ``localhost``. Any other name or address (0.0.0.0 too) is not."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposed_warning(host: str) -> str | None:
    """What to say when the web UI binds ``host``, or None for a loopback one."""
    if is_loopback(host):
        return None
    return (
        f"the web UI binds {host}, which is not a loopback address: other machines "
        "can reach it on its port; to keep it on this machine, set daemon.host to "
        "127.0.0.1 in the user config, or leave out --host"
    )

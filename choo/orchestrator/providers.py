"""Agents that do a task: ``claude``, ``codex``, or any ``command``.

A provider turns a prompt into an argv. ``{prompt}`` in a template is
replaced by the prompt text and ``{prompt_file}`` by the path of a
temporary file holding it; the ``command`` provider also gets the prompt on
stdin.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from choo.errors import ChooError

TEMPLATES: dict[str, list[str]] = {
    "claude": ["claude", "--dangerously-skip-permissions", "-p", "{prompt}"],
    "codex": ["codex", "exec", "{prompt}"],
}


class ProviderError(ChooError):
    """A provider that cannot be used; raised before any work starts."""


@dataclass(frozen=True)
class Provider:
    name: str
    template: tuple[str, ...]
    stdin: bool

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        return [
            part.replace("{prompt_file}", str(prompt_file)).replace("{prompt}", prompt)
            for part in self.template
        ]


def make_provider(name: str, command: list[str] | None, *, cwd: Path) -> Provider:
    """The provider called ``name``, checked: its program must exist."""
    if name == "command":
        if not command:
            raise ProviderError(
                "provider `command` needs provider.command, an argv template such as "
                "['python3', 'agent.py', '{prompt_file}'] in .choo.yaml or CHOO_PROVIDER_COMMAND"
            )
        provider = Provider(name, tuple(command), stdin=True)
    elif name in TEMPLATES:
        provider = Provider(name, tuple(TEMPLATES[name]), stdin=False)
    else:
        raise ProviderError(f"unknown provider {name!r}; choose claude, codex or command")
    program = provider.template[0]
    found = shutil.which(program) if "/" not in program else _local(program, cwd)
    if not found:
        raise ProviderError(
            f"provider {name!r} needs the program {program!r}, which is not on PATH"
            + ("" if name == "command" else "; install it, or pick another with --provider")
        )
    return provider


def _local(program: str, cwd: Path) -> str | None:
    path = Path(program) if Path(program).is_absolute() else cwd / program
    return str(path) if path.is_file() else None

"""Agents that do a task: ``claude``, ``codex``, or any ``command``.

A provider turns a prompt into an argv, and says how the prompt goes in and
what the agent writes out (``output``, read by ``agentstream``):

- ``claude``: ``claude -p --output-format stream-json --verbose``, the
  prompt on stdin (``claude -p`` with no prompt argument reads it from a
  pipe: ``cat file | claude -p`` in the CLI reference);
- ``codex``: ``codex exec --json --sandbox workspace-write -``, the prompt
  on stdin (``-`` makes ``codex exec`` read it from there; with a prompt
  argument, newer versions would append stdin to it). ``--full-auto`` is
  gone from newer versions; ``--sandbox workspace-write`` is what it meant;
- ``command``: any argv template. ``{prompt}`` is replaced by the prompt
  text and ``{prompt_file}`` by the path of a private file holding it; the
  prompt is on stdin too. Its output is ``provider.output``.

On stdin the prompt has no size limit; in an argument (``{prompt}``) the
kernel allows 128 KiB, and the worker fails an attempt whose prompt is
larger, saying to use ``{prompt_file}``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from choo.errors import ChooError
from choo.orchestrator.agentstream import OutputFormat

TEMPLATES: dict[str, tuple[str, ...]] = {
    "claude": (
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--dangerously-skip-permissions",
    ),
    "codex": ("codex", "exec", "--json", "--sandbox", "workspace-write"),
}
OUTPUTS: dict[str, OutputFormat] = {"claude": "claude-stream", "codex": "codex-json"}


class ProviderError(ChooError):
    """A provider that cannot be used; raised before any work starts."""


@dataclass(frozen=True)
class Provider:
    name: str
    template: tuple[str, ...]
    stdin: bool  # the prompt goes on stdin
    output: OutputFormat = "text"
    model: str | None = None  # passed as --model by claude and codex, and used for prices

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        return [
            part.replace("{prompt_file}", str(prompt_file)).replace("{prompt}", prompt)
            for part in self.template
        ]

    @property
    def prompt_in_argv(self) -> bool:
        return any("{prompt}" in part for part in self.template)


def make_provider(
    name: str,
    command: list[str] | None,
    *,
    cwd: Path,
    model: str | None = None,
    output: OutputFormat = "text",
) -> Provider:
    """The provider called ``name``, checked: its program must exist.

    ``output`` is what a ``command`` agent writes; ``model`` goes to the
    claude and codex CLIs as ``--model`` (and to the price table).
    """
    if name == "command":
        if not command:
            raise ProviderError(
                "provider `command` needs provider.command, an argv template such as "
                "['python3', 'agent.py', '{prompt_file}'] in .choo.yaml or CHOO_PROVIDER_COMMAND"
            )
        provider = Provider(name, tuple(command), stdin=True, output=output, model=model)
    elif name in TEMPLATES:
        template = TEMPLATES[name] + (("--model", model) if model else ())
        if name == "codex":
            template += ("-",)  # the prompt: read from stdin
        provider = Provider(name, template, stdin=True, output=OUTPUTS[name], model=model)
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

"""``python -m choo`` runs the CLI."""

from choo.cli import main

main()

"""choo: run a directory of work units in parallel, in dependency order.

What a user runs: the typer CLI (``choo.cli``), config loading, the daemon
client that streams a run's events to the per-user daemon, and the
orchestrator (``choo.orchestrator``). It imports ``protocol`` for what it
shares with the daemon, and never ``choo_daemon`` or ``choo_web``. Every
error it raises on purpose is a ``choo.errors.ChooError``.
"""

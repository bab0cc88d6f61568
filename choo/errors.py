"""The root of every exception choo raises on purpose, and the whole tree.

Each exception is declared beside the code that raises it; all derive from
``ChooError``, so that one clause catches whatever choo refused or could not
do, while bugs (TypeError, ...) and trio's own exceptions pass by::

    ChooError
    ├── ConfigError             a configuration value cannot be used (choo.config)
    ├── PlanInvalid             a tasks directory cannot be run (choo.orchestrator)
    ├── PlanFileRefused         a plan's file is not read: not regular, outside, too big
    ├── FrontmatterError        (and ValueError) a task file's frontmatter cannot be used
    │   ├── UnclosedFrontmatter
    │   ├── InvalidYaml
    │   └── NotAMapping
    ├── ProviderError           an agent provider cannot be used (choo.orchestrator.providers)
    ├── StartFailed             an agent or command could not be started (choo.orchestrator.process)
    ├── PromptFileError         a prompt file could not be written (choo.orchestrator.promptdir)
    ├── RunError                a run cannot start (choo.runner)
    ├── PlanLocked              another run holds the plan's lock (choo.orchestrator.planlock)
    ├── IsolationRefused        a run cannot have its worktrees (choo.orchestrator.isolation)
    ├── UnitSetupFailed         worktree.setup failed (choo.orchestrator.isolation)
    ├── GitError                a git command choo needed failed (choo.orchestrator.gitwork)
    ├── CleanupRefused          cleanup named an unknown or running run (choo.orchestrator.runstate)
    ├── DaemonControlError      a daemon start or stop did not happen (choo.daemonctl)
    ├── DaemonError             the daemon answered, but not with success (choo.client)
    │   └── DaemonRefused       it closed the connection with a fatal error
    ├── DaemonUnavailable       no daemon could be reached in time (choo.client)
    │   └── DaemonBusy          one runs, but it stayed busy until the deadline
    ├── SpoolFailed             the spool file could not be written (choo.client)
    ├── HistoryUnavailable      no daemon runs, so history cannot be read (choo.api)
    ├── HistoryError            the API refused a request (choo.api)
    ├── ExportFileError         a file that is not a choo export (choo.export)
    ├── RunConflict             an imported run ID is taken, with other content (choo.export)
    └── OtlpExportError         a run could not be sent to an OTLP endpoint (choo.otlp_export)
"""

from __future__ import annotations


class ChooError(Exception):
    """Something choo refused or could not do; the message says why and what to do."""

"""One orchestration from start to end: ``choo run`` and ``choo resume``.

Plans the work, makes sure the daemon runs (unless isolated), records the
run through a HistoryRecorder, schedules the units, and turns SIGINT/SIGTERM
into a clean stop that is recorded as ``run.stopped``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from choo import daemonctl, term
from choo.client import (
    DaemonClient,
    DaemonError,
    DaemonUnavailable,
    SpoolFailed,
    open_daemon_client,
)
from choo.config import Config
from choo.errors import ChooError
from choo.orchestrator import gitwork, runstate
from choo.orchestrator.console import ConsoleReporter
from choo.orchestrator.discovery import Plan, PlanInvalid, discover
from choo.orchestrator.events import EventBus
from choo.orchestrator.gitwork import GitError
from choo.orchestrator.graph import Graph, build_graph
from choo.orchestrator.isolation import Isolation, IsolationRefused, RunSpace, Setup, decide
from choo.orchestrator.planlock import PlanLock, hold_plan
from choo.orchestrator.promptdir import open_prompt_dir
from choo.orchestrator.providers import Provider, make_provider
from choo.orchestrator.recorder import HistoryRecorder
from choo.orchestrator.runstate import RunState
from choo.orchestrator.scheduler import Tally, schedule
from choo.orchestrator.worker import Worker, WorkerSettings
from choo.term import plural
from protocol.home import Home
from protocol.times import utc_now

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
COMPLETE_TIMEOUT = 15.0
START_ATTEMPTS = 5  # run IDs tried when another run holds the one picked


class RunError(ChooError):
    """The run cannot start; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunRequest:
    tasks_dir: Path
    config: Config
    home: Home
    dry_run: bool = False
    unit: str | None = None
    use_daemon: bool = True
    record: bool = True
    resume: dict[str, Any] | None = None  # the run to continue, as the API shows it
    resume_reason: str = "resumed with `choo resume`"
    repo_root: Path | None = None  # default: found from tasks_dir
    port: int | None = None  # an explicit --port flag (the config's value is in config)


@dataclass
class RunOutcome:
    run_id: str | None
    status: str
    exit_code: int
    tally: Tally = field(default_factory=Tally)
    web_url: str | None = None


def new_run_id() -> str:
    now = datetime.now(UTC)
    return f"run_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


def repo_root_of(path: Path) -> Path:
    """The repository a tasks folder belongs to: the git top level containing
    it (resolved); outside git, the current folder when ``path`` is inside
    it (``choo run specs/tasks`` from the project root), else ``path``."""
    try:
        top = subprocess.run(
            ["git", "-C", os.fspath(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return Path(top).resolve()
    except (OSError, subprocess.SubprocessError):
        here, target = Path.cwd().resolve(), path.resolve()
        return here if target.is_relative_to(here) else target


def plan_run(request: RunRequest) -> tuple[Plan, Graph]:
    try:
        plan = discover(request.tasks_dir)
    except PlanInvalid as exc:
        raise RunError(f"the plan in {request.tasks_dir} has problems:\n{exc}") from None
    if request.unit is not None:
        plan = _only(plan, request.unit)
    return plan, build_graph(plan)


def _only(plan: Plan, unit: str) -> Plan:
    """``unit`` and everything it needs, transitively."""
    if unit not in plan.units:
        known = ", ".join(plan.units) or "none"
        raise RunError(f"--unit {unit}: no such unit in {plan.tasks_dir} (units: {known})")
    keep: set[str] = set()
    todo = [unit]
    while todo:
        u = todo.pop()
        if u not in keep:
            keep.add(u)
            todo += plan.units[u].depends_on
    return plan.only(keep)


def providers_for(
    plan: Plan, config: Config, repo_root: Path
) -> tuple[Provider, dict[str, Provider]]:
    """Check every provider the plan needs, before any work starts."""
    from choo.orchestrator.providers import ProviderError

    output = config["provider.output"]
    try:
        # provider.model names a model of the run's provider: a unit that
        # asks for another provider gets that CLI's default model.
        default = make_provider(
            config["provider.name"],
            config["provider.command"],
            cwd=repo_root,
            model=config["provider.model"],
            output=output,
        )
        per_unit = {
            u.id: make_provider(
                u.provider, config["provider.command"], cwd=repo_root, output=output
            )
            for u in plan.units.values()
            if u.provider and u.provider != default.name
        }
    except ProviderError as exc:
        raise RunError(str(exc)) from None
    return default, per_unit


async def execute(request: RunRequest, console: Console) -> RunOutcome:
    """Run the plan (or dry-run it). A run holds the plan's lock from before
    anything starts to its end, so that a second run of it is refused."""
    if request.dry_run:
        return await _execute(request, console, None)  # changes nothing: needs no lock
    first_id = request.resume["id"] if request.resume else None  # a new run's comes later
    with hold_plan(request.home, request.tasks_dir, first_id) as lock:
        return await _execute(request, console, lock)


async def _execute(request: RunRequest, console: Console, lock: PlanLock | None) -> RunOutcome:
    plan, graph = plan_run(request)
    term.warn(console, *map(str, plan.warnings))
    repo_root = request.repo_root or repo_root_of(request.tasks_dir)
    config = request.config
    provider: Provider | None = None
    per_unit: dict[str, Provider] = {}
    place = Place(None, None)
    if not request.dry_run:
        provider, per_unit = providers_for(plan, config, repo_root)
        place = await trio.to_thread.run_sync(_place, request, plan, graph, console)
        if place.resumed is not None:
            plan, graph = _plan_on_branch(request, place)
    web_url: str | None = None
    if request.use_daemon:
        web_url = await trio.to_thread.run_sync(_ensure_daemon, request, console)
        _check_port(console, request.port, web_url)

    bus = EventBus()
    space: RunSpace | None = None
    landing = ""
    reporter = ConsoleReporter(console)
    bus.subscribe(reporter.handle)
    run_id = request.resume["id"] if request.resume else new_run_id()
    async with _history(request, console, bus, run_id, plan, repo_root) as recorder:
        if recorder is not None:
            run_id = recorder.run_id  # another, if the first ID was taken
        if lock is not None:
            lock.update(run_id)
        _announce(console, request, run_id if recorder else None, plan, graph, provider, web_url)
        if request.dry_run:
            tally = _dry_run(bus, plan, graph, request)
            status, code = "completed", EXIT_OK
        else:
            assert provider is not None
            if place.iso is not None:
                space = await trio.to_thread.run_sync(
                    _open_space, request, place, run_id, plan, bus
                )
            with open_prompt_dir(run_id) as prompts:
                settings = WorkerSettings(
                    provider=provider,
                    repo_root=repo_root,
                    unit_providers=per_unit,
                    attempts=config["attempts"],
                    provider_timeout=config["provider.timeout"],
                    backpressure_timeout=config["backpressure.timeout"],
                    run_id=run_id,
                    prompts=prompts,
                    prices=config.values.get("prices"),
                    space=space,
                )
                status, code, tally = await _orchestrate(bus, plan, graph, settings, config)
            if space is not None:
                landing = await space.finish(status, land=config["git.land"])
        if recorder is not None:
            await _finish(recorder, console, status, tally)
        recorded = recorder is not None and recorder.failed is None and request.record
        if recorder is not None and recorder.client.web_url:
            # The daemon may have been restarted mid-run, on another port.
            web_url = recorder.client.web_url
    final_plan = _final_plan(request, plan, space)
    console.print(reporter.summary(final_plan, tally))
    if landing:
        console.print(landing)
    shown_id = run_id if recorded else None
    _farewell(console, request.home, status, shown_id, web_url)
    return RunOutcome(shown_id, status, code, tally, web_url)


@dataclass(frozen=True)
class Place:
    """Where a run's units work: ``iso`` None for the main tree; ``resumed``
    is the isolated run being resumed."""

    iso: Isolation | None
    resumed: RunState | None


def _place(request: RunRequest, plan: Plan, graph: Graph, console: Console) -> Place:
    """Isolated or not, said before anything starts (with the warnings)."""
    parallel = request.config["parallelism"] > 1 and any(len(lv) > 1 for lv in graph.levels)
    if request.resume is not None:
        repo = gitwork.find_repo(request.tasks_dir)
        state = runstate.load(request.home, repo, request.resume["id"]) if repo else None
        if repo is not None and state is not None:
            dirty = gitwork.dirty_paths(repo.root)
            return Place(Isolation(repo, state.base, state.head_branch, dirty), state)
        # A run made in the main tree goes on there.
        if parallel:
            term.warn(console, "this run was made in the main tree: its units share it")
        return Place(None, None)
    try:
        found, warning = decide(request.tasks_dir, request.config["isolation"], parallel)
    except IsolationRefused as exc:
        raise RunError(str(exc)) from None
    if warning:
        term.warn(console, warning)
    if found is not None and found.dirty:
        dirty = found.dirty
        listed = "\n  ".join(dirty[:20]) + ("\n  …" if len(dirty) > 20 else "")
        term.warn(
            console,
            f"uncommitted changes in {found.repo.root} are not carried into the units' "
            f"worktrees (they start from {found.base[:10]}):\n  {listed}",
        )
    return Place(found, None)


def _plan_on_branch(request: RunRequest, place: Place) -> tuple[Plan, Graph]:
    """A resumed isolated run's plan as its run branch holds it (the units
    merged so far are complete there)."""
    assert place.iso is not None and place.resumed is not None
    try:
        plan = runstate.plan_at(place.iso.repo, place.resumed.branch, request.tasks_dir)
    except (PlanInvalid, GitError) as exc:
        raise RunError(f"cannot read the plan on branch {place.resumed.branch}: {exc}") from None
    if request.unit is not None:
        plan = _only(plan, request.unit)
    return plan, build_graph(plan)


def _open_space(
    request: RunRequest, place: Place, run_id: str, plan: Plan, bus: EventBus
) -> RunSpace:
    assert place.iso is not None
    config = request.config
    setup = Setup(
        setup=config["worktree.setup"],
        teardown=config["worktree.teardown"],
        baseline_checks=tuple(config["baseline_checks"] or ()),
        check_timeout=config["backpressure.timeout"],
    )
    try:
        return RunSpace.open(
            request.home, place.iso, run_id, plan, bus, setup, resumed=place.resumed
        )
    except GitError as exc:
        raise RunError(f"could not set up the run's worktrees: {exc}") from None


def _final_plan(request: RunRequest, plan: Plan, space: RunSpace | None) -> Plan:
    """The plan as the run left it, for the summary."""
    if space is not None:
        try:
            return space.final_plan()
        except (PlanInvalid, GitError):
            return plan
    try:
        final = discover(request.tasks_dir)
        return _only(final, request.unit) if request.unit is not None else final
    except (PlanInvalid, RunError):
        return plan


def _daemon_settings(request: RunRequest) -> daemonctl.DaemonSettings:
    return daemonctl.DaemonSettings.from_config(request.config)


def _ensure_daemon(request: RunRequest, console: Console) -> str | None:
    probe = daemonctl.probe(request.home)
    if probe.busy is not None:
        return None  # it runs: the client waits for a free connection
    status = probe.status
    if status is None:
        if not request.config["daemon.auto_start"]:
            raise RunError(
                "no daemon is running and daemon.auto_start is false; start it with "
                "`choo daemon start`, or run with --no-daemon",
                EXIT_USAGE,
            )
        try:
            status = daemonctl.start(request.home, _daemon_settings(request)).status
        except daemonctl.DaemonControlError as exc:
            raise RunError(
                f"could not start the history daemon, so nothing was run: {exc}\n"
                "Run with --no-daemon to run without history.",
                EXIT_USAGE,
            ) from None
        if status.get("exposed"):  # its web UI binds a non-loopback address
            term.warn(console, status["exposed"])
    elif not status.get("web"):
        # Another process has just started the daemon: its socket answers
        # before its web server is up.
        status = daemonctl.wait_for_web(request.home, status)
    url = status.get("web")
    return str(url) if url else None


def _check_port(console: Console, wanted: int | None, web_url: str | None) -> None:
    """Say so when --port asks for a port the running daemon does not serve."""
    served = daemonctl.port_conflict({"web": web_url}, wanted)
    if served is not None:
        term.warn(
            console,
            f"--port {wanted} ignored: the daemon already runs with its web UI on port "
            f"{served}; to move it: `choo daemon restart --port {wanted}`",
        )


@asynccontextmanager
async def _history(
    request: RunRequest,
    console: Console,
    bus: EventBus,
    run_id: str,
    plan: Plan,
    repo_root: Path,
) -> AsyncIterator[HistoryRecorder | None]:
    # Without history the run is still shown live (history: false), unless
    # it is a resumption: that continues a recorded run or nothing.
    if not request.use_daemon or (request.resume is not None and not request.record):
        yield None
        return

    def warn(message: str) -> None:
        term.warn(console, message)

    async def restart_daemon() -> None:
        if request.config["daemon.auto_start"]:
            await trio.to_thread.run_sync(
                lambda: daemonctl.start(request.home, _daemon_settings(request))
            )

    try:
        async with open_daemon_client(
            request.home,
            name="choo-run",
            # A live-only run has nothing to keep: no daemon restarted, no replay, no spool.
            ensure_daemon=restart_daemon if request.record else None,
            durable=request.record,
        ) as client:
            recorder = await _open_run(client, request, run_id, plan, repo_root, warn)
            if recorder is not None:
                bus.subscribe(recorder.handle)
            yield recorder
    except DaemonUnavailable as exc:
        warn(f"history: {exc}; the run was not recorded" if request.record else f"live view: {exc}")
        yield None


async def _open_run(
    client: DaemonClient,
    request: RunRequest,
    run_id: str,
    plan: Plan,
    repo_root: Path,
    warn: Callable[[str], None],
) -> HistoryRecorder | None:
    if request.resume is not None:
        return await _resume_run(client, request, run_id, warn)
    graph = build_graph(plan).to_dict()
    tries = 1
    while True:
        # If the daemon is slow to answer, the requests stay queued, and are
        # spooled at the end if it never answers.
        with trio.move_on_after(COMPLETE_TIMEOUT):
            try:
                await client.start_run(
                    run_id,
                    repo_path=str(repo_root),
                    started_at=utc_now(),
                    parallelism=request.config["parallelism"],
                    total_units=len(plan.units),
                    tasks_dir=str(request.tasks_dir.resolve()),
                    dry_run=request.dry_run,
                    graph={
                        "nodes": list(graph["nodes"]),
                        "edges": list(graph["edges"]),
                        "levels": list(graph["levels"]),
                    },
                    history=request.record,
                )
            except DaemonError as exc:
                if exc.code == "run_exists" and tries < START_ATTEMPTS:
                    tries += 1
                    run_id = new_run_id()  # another run took this ID (same second, same luck)
                    continue
                if request.record:
                    warn(f"history: could not record run {run_id} ({exc}); it goes on unrecorded")
                else:
                    warn(f"live view: the daemon does not show run {run_id} ({exc}); it goes on")
                return None
        return HistoryRecorder(client, run_id, warn=warn, recorded=request.record)


async def _resume_run(
    client: DaemonClient, request: RunRequest, run_id: str, warn: Callable[[str], None]
) -> HistoryRecorder | None:
    try:
        with trio.fail_after(COMPLETE_TIMEOUT):
            last = await client.append_resume_marker(
                run_id, time=utc_now(), reason=request.resume_reason
            )
    except (DaemonError, trio.TooSlowError) as exc:
        warn(
            f"history: could not record the resumption of {run_id} ({exc or 'no answer'}); "
            "the run goes on unrecorded"
        )
        return None
    return HistoryRecorder(client, run_id, first_seq=last + 1, warn=warn)


async def _finish(recorder: HistoryRecorder, console: Console, status: str, tally: Tally) -> None:
    if recorder.failed is not None:
        return
    try:
        with trio.fail_after(COMPLETE_TIMEOUT):
            await recorder.client.complete_run(
                recorder.run_id,
                status=status,
                completed_at=utc_now(),
                completed_units=len(tally.done),
                failed_units=len(tally.failed),
                blocked_units=len(tally.blocked),
            )
    except trio.TooSlowError:
        _spool(recorder)
    except DaemonError as exc:
        recorder.fail(f"could not record the end of the run ({exc})")


def _spool(recorder: HistoryRecorder) -> None:
    """Keep what the daemon did not confirm for the next one, with one warning.

    A spool that cannot be written (a full disk) costs those events, never
    the run: its outcome and exit code stay its own.
    """
    late = f"the daemon did not confirm the run within {COMPLETE_TIMEOUT:g} s"
    try:
        spooled = recorder.client.spool()
    except SpoolFailed as exc:
        recorder.fail(
            f"{late}, and its last {plural(exc.events, 'event')} could not be kept: writing "
            f"them to {exc.folder} failed ({exc.reason}); they are lost. Free space there "
            "before the next run",
            then="",
        )
        return
    if spooled is None:
        return
    path, events = spooled
    saved = "was saved" if events == 1 else "were saved"
    recorder.fail(
        f"{late}; its last {plural(events, 'event')} {saved} to {path} and will be "
        "recorded when the daemon next starts (`choo daemon start`)",
        then="",
    )


def _dry_run(bus: EventBus, plan: Plan, graph: Graph, request: RunRequest) -> Tally:
    tasks = sum(len(u.tasks) for u in plan.units.values())
    bus.emit(
        "orch.dryrun.started",
        units=len(plan.units),
        tasks=tasks,
        parallelism=request.config["parallelism"],
        graph=graph.to_dict(),
        tasks_dir=str(request.tasks_dir),
    )
    bus.emit("orch.dryrun.completed", units=len(plan.units), tasks=tasks, levels=len(graph.levels))
    return Tally()


async def _orchestrate(
    bus: EventBus, plan: Plan, graph: Graph, settings: WorkerSettings, config: Config
) -> tuple[str, int, Tally]:
    started = time.monotonic()
    tasks = sum(len(u.tasks) for u in plan.units.values())
    bus.emit(
        "orch.started",
        units=len(plan.units),
        tasks=tasks,
        parallelism=config["parallelism"],
        graph=graph.to_dict(),
        provider=settings.provider.name,
        tasks_dir=str(plan.tasks_dir),
    )
    if settings.space is not None:
        settings.space.announce()
    worker = Worker(bus, settings)
    tally = Tally()
    stopped_by: signal.Signals | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal stopped_by
                async for signum in signals:
                    stopped_by = signal.Signals(signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await schedule(plan, graph, bus, config["parallelism"], worker.run_unit, tally)
            nursery.cancel_scope.cancel()
    counts: dict[str, Any] = {
        "completed": len(tally.done),
        "failed": len(tally.failed),
        "blocked": len(tally.blocked),
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    if stopped_by is not None:
        bus.emit(
            "run.stopped",
            reason=f"{stopped_by.name} received; workers stopped",
            signal=stopped_by.name,
        )
        return "stopped", EXIT_SIGNAL[stopped_by], tally
    if tally.ok:
        bus.emit("orch.completed", **counts)
        return "completed", EXIT_OK, tally
    reason = f"{plural(len(tally.failed), 'unit')} failed, {len(tally.blocked)} blocked"
    bus.emit("orch.failed", error=reason, reason=reason, **counts)
    return "failed", EXIT_FAILED, tally


def _announce(
    console: Console,
    request: RunRequest,
    run_id: str | None,
    plan: Plan,
    graph: Graph,
    provider: Provider | None,
    web_url: str | None,
) -> None:
    verb = "resuming" if request.resume else ("dry run of" if request.dry_run else "running")
    tasks = sum(len(u.tasks) for u in plan.units.values())
    levels = len(graph.levels)
    counts = (
        f"{plural(len(plan.units), 'unit')} ({plural(tasks, 'task')}) in {plural(levels, 'level')}"
    )
    head = f"[bold]choo[/] {verb} {counts}"
    if provider is not None:
        head += f" · provider {provider.name} · parallelism {request.config['parallelism']}"
    console.print(head)
    if run_id:
        live = f" · live at {daemonctl.login_url(request.home, web_url)}" if web_url else ""
        console.print(f"  run [bold]{run_id}[/]{live}", soft_wrap=True)
    if request.dry_run:
        for n, level in enumerate(graph.levels):
            console.print(f"  level {n}:")
            for unit_id in level:
                unit = plan.units[unit_id]
                deps = f" [dim](after {', '.join(unit.depends_on)})[/]" if unit.depends_on else ""
                console.print(f"    [bold]{unit_id}[/]{deps}")
                for task in unit.tasks:
                    console.print(f"      #{task.number} {task.title} [dim]{task.status}[/]")


def _farewell(
    console: Console, home: Home, status: str, run_id: str | None, web_url: str | None
) -> None:
    color = {"completed": "green", "failed": "red", "stopped": "yellow"}.get(status, "white")
    console.print(f"[{color}]run {status}[/]" + (f": {run_id}" if run_id else ""))
    if run_id and web_url:
        url = daemonctl.login_url(home, web_url, f"#/history?run={run_id}")
        console.print(f"history: {url}", soft_wrap=True)

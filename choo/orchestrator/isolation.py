"""An isolated run: each unit in its own git worktree, merged into a run branch.

When the plan lives in a git repository with a commit, a run never touches
the main working tree. It records the base commit (``HEAD``), makes a run
branch ``choo/<run-id>`` there, and gives each unit a worktree on
``choo/<run-id>-<unit>``, started from the run branch as it stands when the
unit starts (so it holds the work of every unit it depends on). A passed
task is committed in its unit's worktree (``task.committed``); a completed
unit is merged into the run branch, one merge at a time, in a worktree of
the run's own (``_merge``), where the baseline checks then run. A completed
run's branch lands on the branch checked out at the start by a fast-forward,
when asked and when safe.

Worktrees live in CHOO_HOME (``choo.orchestrator.runstate``), never in the
user's tree. Git is called through ``gitwork`` (synchronous) on worker
threads, so that the agents of other units go on meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import trio

from choo.errors import ChooError
from choo.orchestrator import gitwork, planfile, runstate
from choo.orchestrator.discovery import Plan, Task, Unit
from choo.orchestrator.events import EventBus
from choo.orchestrator.frontmatter import FrontmatterError, split
from choo.orchestrator.gitwork import GitError, Repo
from choo.orchestrator.planfile import DEFAULT_MAX_BYTES, PlanFileRefused
from choo.orchestrator.process import Completed, StartFailed, run_process
from choo.orchestrator.runstate import RunState
from protocol.home import Home
from protocol.settings import default
from protocol.times import utc_now

T = TypeVar("T")


async def _git(fn: Callable[..., T], *args: Any) -> T:
    """A gitwork call on a worker thread: git never holds up the other units."""
    return await trio.to_thread.run_sync(fn, *args)


@dataclass(frozen=True)
class Isolation:
    """What an isolated run needs to know before it starts."""

    repo: Repo
    base: str  # HEAD's commit at the start
    head_branch: str | None  # the branch checked out at the start (None: detached)
    dirty: list[str]  # uncommitted paths of the main tree, not carried over


def decide(tasks_dir: Path, isolation: str, parallel: bool) -> tuple[Isolation | None, str | None]:
    """Whether a run of ``tasks_dir`` is isolated, and a warning when it is not
    although units could share a tree (``parallel``: more than one at once).

    Raises ``IsolationRefused`` when the plan's own files have uncommitted
    changes: a worktree would not hold them.
    """
    shared = "units that run at the same time share the working tree"
    if isolation == "none":
        return None, (f"isolation is off: {shared}" if parallel else None)
    repo = gitwork.find_repo(tasks_dir)
    if repo is None:
        return None, (f"{tasks_dir} is not in a git repository: {shared}" if parallel else None)
    base = gitwork.head_commit(repo)
    if base is None:
        warning = (
            f"the git repository {repo.root} has no commit yet, so units cannot have "
            f"worktrees of their own: {shared}. Commit the plan to isolate them"
        )
        return None, (warning if parallel else None)
    plan_rel = tasks_dir.resolve().relative_to(repo.root)
    dirty = gitwork.dirty_paths(repo.root)  # one `git status`: the plan's share is in it
    inside = plan_rel.as_posix() + "/"
    changed = dirty if inside == "./" else [p for p in dirty if p.startswith(inside)]
    if changed:
        listed = "\n  ".join(changed[:20]) + ("\n  …" if len(changed) > 20 else "")
        raise IsolationRefused(
            f"the plan in {plan_rel} has uncommitted changes, which the units' worktrees "
            f"would not have:\n  {listed}\nCommit them (git add {plan_rel} && git commit), "
            "or run in the main tree with --in-place"
        )
    return Isolation(repo, base, gitwork.current_branch(repo.root), dirty), None


class IsolationRefused(ChooError):
    """The run cannot be isolated as things stand; the message says what to do."""


@dataclass(frozen=True)
class UnitSpace:
    """Where one unit works: its worktree, its branch, its copy of the plan."""

    unit: str
    root: Path  # the worktree: the agent's and the validation's working folder
    branch: str
    base: str  # the run branch's commit it started from
    tasks_dir: Path  # the plan's folder inside the worktree

    def describe(self) -> dict[str, Any]:
        return {"worktree": str(self.root), "branch": self.branch, "base": self.base}


@dataclass(frozen=True)
class Setup:
    """The config an isolated run follows."""

    setup: str | None = None  # worktree.setup
    teardown: str | None = None  # worktree.teardown
    baseline_checks: tuple[Mapping[str, str], ...] = ()
    # For setup and baseline commands, as for validations.
    check_timeout: float = default("backpressure.timeout")
    max_file_bytes: int = DEFAULT_MAX_BYTES  # plan.max_file_bytes, to read the plan at the end


class RunSpace:
    """One isolated run's git side: branches, worktrees, commits, merges, landing."""

    def __init__(
        self, home: Home, iso: Isolation, state: RunState, plan: Plan, bus: EventBus, setup: Setup
    ) -> None:
        self.home = home
        self.repo = iso.repo
        self.iso = iso
        self.state = state
        self.plan = plan
        self.bus = bus
        self.setup = setup
        self.folder = runstate.run_folder(home, self.repo, state.run_id)
        self.merge_lock = trio.Lock()  # one merge into the run branch at a time
        self._plan_rel = plan.tasks_dir.resolve().relative_to(self.repo.root)

    # -- the run ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: Home,
        iso: Isolation,
        run_id: str,
        plan: Plan,
        bus: EventBus,
        setup: Setup,
        *,
        resumed: RunState | None = None,
    ) -> RunSpace:
        """Make (or, resuming, find again) the run branch and the merge worktree."""
        branch = runstate.run_branch(run_id)
        state = resumed or RunState(
            run_id=run_id,
            repo_root=str(iso.repo.root),
            tasks_dir=str(plan.tasks_dir.resolve().relative_to(iso.repo.root)),
            base=iso.base,
            branch=branch,
            head_branch=iso.head_branch,
            started_at=utc_now(),
            status="running",
        )
        state.status = "running"
        if not gitwork.branch_exists(iso.repo, branch):
            gitwork.create_branch(iso.repo, branch, state.base)
        space = cls(home, iso, state, plan, bus, setup)
        space.folder.mkdir(parents=True, exist_ok=True)
        gitwork.add_worktree(iso.repo, space.folder / runstate.MERGE_TREE, branch, branch)
        runstate.save(home, iso.repo, state)
        return space

    def announce(self) -> None:
        """``run.branch``: where this run's work goes (after ``orch.started``)."""
        self.bus.emit(
            "run.branch",
            base=self.state.base,
            branch=self.state.branch,
            head_branch=self.state.head_branch,
            worktrees=str(self.folder),
            dirty=self.iso.dirty[:200],
            isolation="worktree",
        )

    def save(self) -> None:
        runstate.save(self.home, self.repo, self.state)

    # -- a unit -------------------------------------------------------------

    async def open_unit(self, unit: Unit) -> tuple[UnitSpace, Unit]:
        """The unit's worktree (made from the run branch's tip, or found again
        on a resume), and the unit as its worktree's task files say."""
        path = self.folder / unit.id
        branch = runstate.unit_branch(self.state.run_id, unit.id)
        async with self.merge_lock:  # the run branch's tip must not move under us
            base = await _git(gitwork.branch_tip, self.repo, self.state.branch) or self.state.base
            made = await _git(gitwork.add_worktree, self.repo, path, branch, self.state.branch)
        space = UnitSpace(unit.id, path, branch, base, path / self._plan_rel)
        self.state.units[unit.id] = "working"
        self.save()
        if made and self.setup.setup:
            done = await self._shell(self.setup.setup, path)
            if not done.ok:
                raise UnitSetupFailed(
                    f"worktree.setup `{self.setup.setup}` {_how(done)} in {path}"
                    + (f":\n{done.tail(1000)}" if done.output.strip() else "")
                )
        return space, self._as_in(space, unit)

    def _as_in(self, space: UnitSpace, unit: Unit) -> Unit:
        """``unit`` with its task files (and their statuses) in ``space``."""
        tasks = []
        for task in unit.tasks:
            path = space.tasks_dir / task.path.relative_to(self.plan.tasks_dir)
            tasks.append(replace(task, path=path, status=_status_in(path, task.status)))
        return replace(unit, path=space.tasks_dir / unit.id, tasks=tuple(tasks))

    async def head(self, space: UnitSpace) -> str | None:
        return await _git(gitwork.head_commit, space.root)

    async def commit_task(self, space: UnitSpace, task: Task, attempt: int, since: str) -> None:
        """Commit what the task changed, and record every commit it made."""
        message = f"{space.unit} #{task.number}: {task.title}"
        trailers = {"Choo-Run": self.state.run_id, "Choo-Attempt": str(attempt)}
        await _git(gitwork.commit_all, space.root, message, trailers)
        commits = await _git(gitwork.commits_since, space.root, since)
        if not commits:
            return
        files = sorted({f for c in commits for f in c.files})
        self.bus.emit(
            "task.committed",
            unit=space.unit,
            task=task.number,
            attempt=attempt,
            commits=[
                {
                    "sha": c.sha,
                    "subject": c.subject,
                    "author": c.author,
                    "files": c.files[:200],
                    "insertions": c.insertions,
                    "deletions": c.deletions,
                }
                for c in commits
            ],
            shas=[c.sha for c in commits],
            files=files[:200],
            files_changed=len(files),
            insertions=sum(c.insertions for c in commits),
            deletions=sum(c.deletions for c in commits),
        )

    async def merge(self, space: UnitSpace) -> list[str]:
        """Merge the unit's branch into the run branch; [] when it merged,
        else the conflicting files (the run branch is left as it was)."""
        async with self.merge_lock:
            message = f"choo: merge unit {space.unit}"
            trailers = {"Choo-Run": self.state.run_id}
            merged = await _git(
                gitwork.merge, self.folder / runstate.MERGE_TREE, space.branch, message, trailers
            )
            if isinstance(merged, list):
                return merged
            self.bus.emit(
                "unit.merged",
                unit=space.unit,
                branch=space.branch,
                into=self.state.branch,
                sha=merged,
            )
            await self._baseline(space.unit)
        self.state.units[space.unit] = "merged"
        self.save()
        return []

    def conflict(self, space: UnitSpace, files: list[str]) -> None:
        self.bus.emit(
            "unit.merge.conflict",
            unit=space.unit,
            branch=space.branch,
            into=self.state.branch,
            files=files[:200],
        )

    async def bring_in_run_branch(self, space: UnitSpace) -> list[str]:
        """Merge the run branch into the unit's worktree, leaving conflict
        markers for its agent: the files that conflict ([]: merged cleanly)."""
        return await _git(gitwork.start_merge, space.root, self.state.branch)

    async def unresolved(self, space: UnitSpace, files: list[str]) -> list[str]:
        """The files still in conflict after the agent's attempt: those that
        hold conflict markers (the agent need not `git add` what it fixed)."""
        return sorted(await _git(gitwork.conflict_markers, space.root, files))

    async def conclude_merge(self, space: UnitSpace) -> str:
        return await _git(gitwork.finish_merge, space.root)

    async def _baseline(self, unit: str) -> None:
        where = self.folder / runstate.MERGE_TREE
        for check in self.setup.baseline_checks:
            done = await self._shell(check["command"], where)
            outcome: dict[str, Any] = {
                "exit_code": done.exit_code,
                "duration_ms": done.duration_ms,
                "timed_out": done.timed_out,
                "output_tail": done.tail(),
            }
            kind = "unit.baseline.ok" if done.ok else "unit.baseline.fail"
            error = None if done.ok else f"baseline check {check['name']} {_how(done)}"
            self.bus.emit(
                kind,
                unit=unit,
                error=error,
                name=check["name"],
                command=check["command"],
                **outcome,
            )

    async def close_unit(self, space: UnitSpace, outcome: str) -> None:
        """A unit is over: a merged one's worktree goes (after the teardown
        command), a failed or stopped one's stays for inspection."""
        self.state.units[space.unit] = outcome
        self.save()
        if outcome != "merged":
            return
        if self.setup.teardown:
            await self._shell(self.setup.teardown, space.root)
        with contextlib.suppress(GitError):
            await _git(gitwork.remove_worktree, self.repo, space.root)

    async def _shell(self, command: str, cwd: Path) -> Completed:
        try:
            return await run_process(command, cwd=cwd, shell=True, timeout=self.setup.check_timeout)
        except StartFailed as exc:
            return Completed(None, exc.reason, 0, False)

    # -- the end ------------------------------------------------------------

    def final_plan(self) -> Plan:
        """The plan as the run left it: merged units as the run branch holds
        them, the others as their kept worktrees do."""
        merged = runstate.plan_at(
            self.repo, self.state.branch, self.plan.tasks_dir, max_bytes=self.setup.max_file_bytes
        )
        units = {}
        for unit_id, unit in self.plan.units.items():
            path = self.folder / unit_id
            if self.state.units.get(unit_id) in ("failed", "stopped") and path.is_dir():
                space = UnitSpace(unit_id, path, "", "", path / self._plan_rel)
                units[unit_id] = self._as_in(space, unit)
            else:
                units[unit_id] = merged.units.get(unit_id, unit)
        return replace(self.plan, units=units)

    async def finish(self, status: str, *, land: bool) -> str:
        """Record how the run ended and, for a completed one, land it (or say
        how): the line the run's summary prints."""
        self.state.status = status
        with contextlib.suppress(GitError):
            await _git(gitwork.remove_worktree, self.repo, self.folder / runstate.MERGE_TREE)
        try:
            if status != "completed":
                return (
                    f"run branch {self.state.branch} keeps the merged work; "
                    f"`choo resume {self.state.run_id}` continues it"
                )
            return await self._land(land)
        finally:
            self.save()

    async def _land(self, land: bool) -> str:
        branch, into = self.state.branch, self.state.head_branch
        tip = await _git(gitwork.branch_tip, self.repo, branch)
        command = f"git -C {self.repo.root} merge {branch}"
        if land and into is not None:
            refused = await _git(gitwork.fast_forward, self.repo.root, into, branch)
            if refused is None:
                self.state.landed = True
                self.bus.emit("run.land", landed=True, branch=branch, into=into, sha=tip)
                return f"landed: {into} fast-forwarded to {branch} ({(tip or '')[:10]})"
            reason = refused
        elif land:
            reason = "the main tree was on no branch (detached HEAD) at the start"
        else:
            reason = "git.land is off; --land or git.land: true fast-forwards it"
        self.bus.emit(
            "run.land",
            landed=False,
            branch=branch,
            into=into,
            sha=tip,
            reason=reason,
            command=command,
        )
        return f"not landed: {reason}. To take the result: {command}"


class UnitSetupFailed(ChooError):
    """``worktree.setup`` failed in a new worktree; the message says how."""


def _how(done: Completed) -> str:
    if done.timed_out:
        return "timed out"
    if done.exit_code is None:
        return "could not start"
    return f"exited with code {done.exit_code}"


def _status_in(path: Path, fallback: str) -> str:
    """A task file's status as its worktree copy says it."""
    try:
        meta, _, _ = split(planfile.read_text(path, root=None))
    except (OSError, UnicodeDecodeError, FrontmatterError, PlanFileRefused):
        return fallback
    status = (meta or {}).get("status")
    return status if isinstance(status, str) else fallback

"""What an isolated run left in a repository, kept between processes.

An isolated run works on a run branch, ``choo/<run_id>``, and one branch and
work tree per unit, ``choo/<run_id>-<unit>``. Its work trees live in CHOO_HOME,
outside the user's tree, in one folder per repository (``space_root``)::

    <space_root>/<run_id>/run.json    the run's state (RunState)
    <space_root>/<run_id>/<unit>/     a unit's work tree
    <space_root>/<run_id>/_merge/     where units merge into the run branch

``choo status`` and ``choo resume`` find a run that has not landed here
(``pending_run``) and read the plan as its branch has it (``plan_at``);
``choo cleanup`` removes what finished runs left (``cleanup``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from choo.errors import ChooError
from choo.orchestrator import gitwork
from choo.orchestrator.discovery import Plan, PlanInvalid, Problem, Unit, discover
from choo.orchestrator.gitwork import Repo
from choo.orchestrator.planfile import DEFAULT_MAX_BYTES
from choo.orchestrator.planlock import lock_path, read_holder
from protocol.home import Home

STATE_FILE = "run.json"
MERGE_TREE = "_merge"
RUN_STATUSES = ("running", "completed", "failed", "stopped")
UNIT_STATES = ("working", "merged", "failed", "stopped")


@dataclass
class RunState:
    run_id: str
    repo_root: str  # the main work tree
    tasks_dir: str  # relative to repo_root ("." for the root itself)
    base: str  # the commit the run started from
    branch: str  # "choo/<run_id>"
    head_branch: str | None  # checked out at start (None: detached)
    started_at: str  # ISO 8601, UTC
    status: str  # one of RUN_STATUSES
    landed: bool = False
    units: dict[str, str] = field(default_factory=dict)  # unit -> one of UNIT_STATES


class CleanupRefused(ChooError):
    """``choo cleanup RUN_ID`` named a run that is unknown here or still running."""

    exit_code = 2


# --- names ----------------------------------------------------------------------


def run_branch(run_id: str) -> str:
    return f"choo/{run_id}"


def unit_branch(run_id: str, unit: str) -> str:
    # Not choo/<run_id>/<unit>: git refuses a ref below another ref.
    return f"choo/{run_id}-{unit}"


def space_root(home: Home, repo: Repo) -> Path:
    """The folder of this repository's runs in CHOO_HOME."""
    digest = hashlib.sha1(str(repo.common_dir.resolve()).encode()).hexdigest()[:8]
    return home.root / "worktrees" / f"{repo.root.name}-{digest}"


def run_folder(home: Home, repo: Repo, run_id: str) -> Path:
    return space_root(home, repo) / run_id


def unit_worktree(home: Home, repo: Repo, run_id: str, unit: str) -> Path:
    return run_folder(home, repo, run_id) / unit


def merge_worktree(home: Home, repo: Repo, run_id: str) -> Path:
    return run_folder(home, repo, run_id) / MERGE_TREE


def tasks_rel(repo: Repo, tasks_dir: Path) -> str | None:
    """``tasks_dir`` relative to the main tree, as RunState keeps it; None if outside it."""
    try:
        rel = tasks_dir.resolve().relative_to(repo.root)
    except ValueError:
        return None
    return rel.as_posix()


# --- the state file -------------------------------------------------------------


def save(home: Home, repo: Repo, state: RunState) -> None:
    """Write ``state`` to its run.json; a reader sees the old file or the new, never half."""
    folder = run_folder(home, repo, state.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load(home: Home, repo: Repo, run_id: str) -> RunState | None:
    """The state of run ``run_id``; None when there is none (or it cannot be read)."""
    return _read(run_folder(home, repo, run_id) / STATE_FILE)


def _read(path: Path) -> RunState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = {f.name for f in dataclasses.fields(RunState)}
    try:
        return RunState(**{key: value for key, value in data.items() if key in known})
    except TypeError:  # a field missing: not a state this version can use
        return None


def runs(home: Home, repo: Repo) -> list[RunState]:
    """Every run of this repository with a readable state, newest first."""
    root = space_root(home, repo)
    try:
        folders = list(root.iterdir())
    except OSError:
        return []
    found = [state for folder in folders if (state := _read(folder / STATE_FILE)) is not None]
    return sorted(found, key=lambda s: (s.started_at, s.run_id), reverse=True)


# --- landing --------------------------------------------------------------------


def has_landed(repo: Repo, state: RunState) -> bool:
    """True when the run's result is in the branch it started from (or HEAD).

    A run whose branch is gone has landed only if it says so.
    """
    if state.landed:
        return True
    tip = gitwork.branch_tip(repo, state.branch)
    if tip is None:
        return False
    target = gitwork.branch_tip(repo, state.head_branch) if state.head_branch else None
    target = target or gitwork.head_commit(repo)
    return target is not None and gitwork.is_ancestor(repo, tip, target)


def pending_run(home: Home, repo: Repo, tasks_dir: Path) -> RunState | None:
    """The newest run of the plan in ``tasks_dir`` whose branch exists and has not landed."""
    rel = tasks_rel(repo, tasks_dir)
    for state in runs(home, repo):
        if state.tasks_dir != rel or not gitwork.branch_exists(repo, state.branch):
            continue
        return None if has_landed(repo, state) else state
    return None


def plan_at(repo: Repo, ref: str, tasks_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Plan:
    """The plan in ``tasks_dir`` as it is on ``ref``, its paths those of ``tasks_dir``.

    Raises PlanInvalid (naming ``tasks_dir`` and ``ref``) when ``ref`` has no
    such folder or the plan there has problems.
    """
    rel = tasks_rel(repo, tasks_dir)
    if rel is None:
        problem = f"not inside the repository {repo.root}, so not on {ref}"
        raise PlanInvalid([Problem(tasks_dir, None, problem)])
    with tempfile.TemporaryDirectory(prefix="choo-plan-") as tmp:
        copy = Path(tmp).resolve()
        if not gitwork.archive_folder(repo, ref, rel, copy):
            problem = f"not on {ref}: the run branch holds no {rel}; `git ls-tree {ref}` lists it"
            raise PlanInvalid([Problem(tasks_dir, None, problem)])
        archived = copy / rel
        try:
            plan = discover(archived, max_bytes=max_bytes, root=copy)
        except PlanInvalid as exc:
            problems = [_rebase_problem(p, archived, tasks_dir, ref) for p in exc.problems]
            raise PlanInvalid(problems) from None
    return _rebase_plan(plan, archived, tasks_dir)


def _rebase(path: Path, old: Path, new: Path) -> Path:
    try:
        return new / path.relative_to(old)
    except ValueError:
        return path


def _rebase_problem(problem: Problem, old: Path, new: Path, ref: str) -> Problem:
    file = _rebase(problem.file, old, new)
    return dataclasses.replace(problem, file=file, message=f"{problem.message} (on {ref})")


def _rebase_plan(plan: Plan, old: Path, new: Path) -> Plan:
    units = {unit_id: _rebase_unit(unit, old, new) for unit_id, unit in plan.units.items()}
    changes: dict[str, Any] = {"tasks_dir": new, "units": units}
    warnings = getattr(plan, "warnings", None)
    if warnings is not None:  # a plan's warnings name files too
        changes["warnings"] = tuple(
            dataclasses.replace(w, file=_rebase(w.file, old, new)) for w in warnings
        )
    return dataclasses.replace(plan, **changes)


def _rebase_unit(unit: Unit, old: Path, new: Path) -> Unit:
    tasks = tuple(dataclasses.replace(t, path=_rebase(t.path, old, new)) for t in unit.tasks)
    return dataclasses.replace(unit, path=_rebase(unit.path, old, new), tasks=tasks)


# --- cleanup --------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    run_id: str
    kind: str  # "worktree", "branch" or "folder"
    name: str  # the work tree's or folder's path, or the branch's name


def cleanup(home: Home, repo: Repo, run_id: str | None, all: bool, dry_run: bool) -> list[Removed]:
    """Remove the work trees, branches and folders of finished runs; what went (or would go).

    Without ``run_id``: the finished runs that have landed; with ``all``,
    every finished run. A run's own branch goes only when it has landed, or
    with ``all``: until then it holds the run's only copy of the work, and
    its run.json stays with it (``choo status`` reads the branch, and
    ``kept_runs`` lists it).
    """
    removed: list[Removed] = []
    for state in _to_clean(home, repo, run_id, all):
        landed = has_landed(repo, state)
        items = _leftovers(home, repo, state, drop_run_branch=landed or all)
        if not dry_run:
            _remove(repo, items)
        removed.extend(items)
    return removed


def _to_clean(home: Home, repo: Repo, run_id: str | None, all: bool) -> list[RunState]:
    if run_id is None:
        return [
            state
            for state in runs(home, repo)
            if _finished(home, state) and (all or has_landed(repo, state))
        ]
    state = load(home, repo, run_id)
    if state is None:
        known = ", ".join(s.run_id for s in runs(home, repo)) or "none"
        raise CleanupRefused(
            f"no run {run_id} in {space_root(home, repo)} (runs of {repo.root} there: {known}); "
            "`choo cleanup --dry-run` lists what can go"
        )
    if _live_holder(home, state):
        raise CleanupRefused(
            f"run {run_id} is running; stop it first (Ctrl-C in its terminal), then clean up"
        )
    return [state]


def _finished(home: Home, state: RunState) -> bool:
    return state.status != "running" and not _live_holder(home, state)


def _live_holder(home: Home, state: RunState) -> bool:
    """Whether a live process holds the lock of this run's plan, for this run (or one starting).

    Reads the lock's record rather than trying the lock: taking it, even for
    an instant, could turn a starting run away.
    """
    holder = read_holder(lock_path(home, Path(state.repo_root) / state.tasks_dir)) or {}
    try:
        pid = int(holder["pid"])
    except (ValueError, TypeError, KeyError):
        return False
    if holder.get("run_id") not in (None, state.run_id):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def _leftovers(home: Home, repo: Repo, state: RunState, drop_run_branch: bool) -> list[Removed]:
    """What run ``state`` left that exists: work trees, then branches, then its folder."""
    folder = run_folder(home, repo, state.run_id)
    units = set(state.units)
    with contextlib.suppress(OSError):
        units |= {p.name for p in folder.iterdir() if p.is_dir() and p.name != MERGE_TREE}
    trees = [folder / unit for unit in sorted(units)] + [folder / MERGE_TREE]
    branches = [unit_branch(state.run_id, unit) for unit in sorted(units)]
    if drop_run_branch:
        branches.append(state.branch)
    found = [Removed(state.run_id, "worktree", str(tree)) for tree in trees if tree.exists()]
    found += [
        Removed(state.run_id, "branch", name)
        for name in branches
        if gitwork.branch_exists(repo, name)
    ]
    kept = not drop_run_branch and gitwork.branch_exists(repo, state.branch)
    if folder.exists() and not kept:
        found.append(Removed(state.run_id, "folder", str(folder)))
    return found


def kept_runs(home: Home, repo: Repo) -> list[RunState]:
    """Finished runs that have not landed: their work is on their run branch alone."""
    return [
        state
        for state in runs(home, repo)
        if _finished(home, state)
        and gitwork.branch_exists(repo, state.branch)
        and not has_landed(repo, state)
    ]


def _remove(repo: Repo, items: list[Removed]) -> None:
    gitwork.prune_worktrees(repo)  # a work tree deleted by hand would keep its branch
    for item in items:
        if item.kind == "worktree":
            gitwork.remove_worktree(repo, Path(item.name))
        elif item.kind == "branch":
            gitwork.delete_branch(repo, item.name)
        else:
            shutil.rmtree(item.name, ignore_errors=True)

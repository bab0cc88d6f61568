"""The git operations a run needs: worktrees, branches, commits, merges, landing.

Synchronous: each function runs ``git`` once or a few times in a subprocess
and returns plain values. Every call gets ``GIT_TERMINAL_PROMPT=0`` (never
ask for a password), ``LC_ALL=C`` (messages choo can read), and, where git
would refuse to commit for want of an identity, the fallback identity
``choo <choo@localhost>``. Commits and merges skip hooks (``--no-verify``):
the task's validation command is the check. A git failure raises
``GitError``, naming the command, the folder and git's own words.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from choo.errors import ChooError

FALLBACK_NAME = "choo"
FALLBACK_EMAIL = "choo@localhost"
RUN_TRAILER = "Choo-Run"
_STDERR_LINES = 5
# `-c` options for every command that commits: a user's commit.gpgSign would
# make an unattended commit wait on a pinentry, or fail.
_COMMIT_OPTIONS = ("-c", "commit.gpgSign=false")


class GitError(ChooError):
    """A git command failed; ``command`` is its argv, ``stderr`` what git said."""

    def __init__(self, command: list[str], folder: Path, stderr: str) -> None:
        self.command = command
        self.folder = folder
        self.stderr = stderr
        said = "\n    ".join(stderr.strip().splitlines()[:_STDERR_LINES]) or "(no message)"
        super().__init__(f"`{' '.join(command)}` failed in {folder}:\n    {said}")


@dataclass(frozen=True)
class Repo:
    root: Path  # top level of the main work tree (resolved)
    common_dir: Path  # the shared .git folder (resolved)


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str  # "choo" when it carries the Choo-Run trailer, else "agent"
    files: list[str]  # paths changed (renames: the new path)
    insertions: int
    deletions: int  # binary files count 0/0


# --- running git ----------------------------------------------------------------


def _env(cwd: Path, identity: bool) -> dict[str, str]:
    """git's environment; with ``identity``, the fallback identity where git has none."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    if identity:
        configured = _configured_identity(cwd, env)
        fallback = {}
        if "email" not in configured:
            fallback = {"NAME": FALLBACK_NAME, "EMAIL": FALLBACK_EMAIL}
        elif "name" not in configured:
            fallback = {"NAME": FALLBACK_NAME}
        for role in ("AUTHOR", "COMMITTER"):
            for key, value in fallback.items():
                env.setdefault(f"GIT_{role}_{key}", value)  # the caller's own env wins
    return env


def _configured_identity(cwd: Path, env: dict[str, str]) -> set[str]:
    """Which of user.name and user.email git's config sets (to something)."""
    found = _spawn(["git", "config", "--get-regexp", r"^user\.(name|email)$"], cwd, env)
    return {
        key.removeprefix("user.")
        for key, _, value in (line.partition(" ") for line in found.stdout.splitlines())
        if value.strip()
    }


def _spawn(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError(argv, cwd, f"cannot run git: {exc.strerror}; install git") from exc
    except NotADirectoryError as exc:
        raise GitError(argv, cwd, f"not a folder: {exc.strerror}") from exc


def _run(
    cwd: Path, *args: str, identity: bool = False, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; raise GitError unless its exit code is in ``ok``."""
    argv = ["git", *args]
    result = _spawn(argv, cwd, _env(cwd, identity))
    if result.returncode not in ok:
        raise GitError(argv, cwd, result.stderr or result.stdout)
    return result


def _out(cwd: Path, *args: str) -> str:
    return _run(cwd, *args).stdout.strip()


def _sha_of(cwd: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names none (no such branch, no commit yet)."""
    found = _run(cwd, "rev-parse", "-q", "--verify", f"{rev}^{{commit}}", ok=(0, 1, 128))
    return (found.stdout.strip() or None) if found.returncode == 0 else None


def _z_list(text: str) -> list[str]:
    return [item for item in text.split("\0") if item]


def _message(message: str, trailers: dict[str, str]) -> str:
    if not trailers:
        return message
    lines = "\n".join(f"{key}: {value}" for key, value in trailers.items())
    return f"{message.rstrip()}\n\n{lines}\n"


# --- where we are ---------------------------------------------------------------


def find_repo(path: Path) -> Repo | None:
    """The repository holding ``path`` (a file or folder), or None outside git."""
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    result = _spawn(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel"],
        folder,
        _env(folder, False),
    )
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) != 2:
        return None  # outside git, or inside a .git folder or a bare repository
    common_dir = Path(lines[0]).resolve()
    return Repo(root=_main_tree(folder, Path(lines[1]).resolve()), common_dir=common_dir)


def _main_tree(folder: Path, toplevel: Path) -> Path:
    """The main work tree; ``toplevel`` is the (maybe linked) work tree holding ``folder``."""
    listing = _out(folder, "worktree", "list", "--porcelain")
    first = listing.splitlines()[0] if listing else ""
    if first.startswith("worktree "):
        return Path(first.removeprefix("worktree ")).resolve()
    return toplevel


def head_commit(repo_or_dir: Repo | Path) -> str | None:
    """The sha HEAD points to, or None when there is no commit yet."""
    folder = repo_or_dir.root if isinstance(repo_or_dir, Repo) else repo_or_dir
    return _sha_of(folder, "HEAD")


def current_branch(root: Path) -> str | None:
    """The branch checked out in the work tree ``root``, or None when HEAD is detached."""
    found = _run(root, "symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1))
    return (found.stdout.strip() or None) if found.returncode == 0 else None


def dirty_paths(root: Path, under: Path | None = None) -> list[str]:
    """Paths (relative to ``root``) changed, staged or untracked; not ignored ones."""
    args = ["status", "--porcelain", "-z", "--untracked-files=all"]
    if under is not None:
        rel = under.resolve().relative_to(root.resolve()) if under.is_absolute() else under
        args += ["--", str(rel)]
    items = _run(root, *args).stdout.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(items):
        entry = items[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":
            i += 1  # a rename or copy is followed by its old path
    return sorted(dict.fromkeys(paths))


# --- branches and worktrees -----------------------------------------------------


def branch_exists(repo: Repo, name: str) -> bool:
    return branch_tip(repo, name) is not None


def branch_tip(repo: Repo, name: str) -> str | None:
    return _sha_of(repo.root, f"refs/heads/{name}")


def create_branch(repo: Repo, name: str, at: str) -> None:
    """Create branch ``name`` at commit ``at``; git refuses when it exists."""
    _run(repo.root, "branch", "--no-track", name, at)


def _worktrees(repo: Repo) -> dict[Path, str | None]:
    """Registered work trees -> the branch each has checked out (None: detached)."""
    found: dict[Path, str | None] = {}
    current: Path | None = None
    for line in _out(repo.root, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            current = Path(line.removeprefix("worktree ")).resolve()
            found[current] = None
        elif line.startswith("branch ") and current is not None:
            found[current] = line.removeprefix("branch ").removeprefix("refs/heads/")
    return found


def add_worktree(repo: Repo, path: Path, branch: str, start: str) -> bool:
    """A work tree at ``path`` on ``branch`` (created at ``start`` if new).

    Returns True when it was created, False when that work tree exists
    already on that branch (a resumed run reuses it).
    """
    _run(repo.root, "worktree", "prune")
    registered = _worktrees(repo)
    where = path.resolve()
    if where in registered:
        if registered[where] == branch and where.is_dir():
            return False
        raise GitError(
            ["git", "worktree", "add", str(path), branch],
            repo.root,
            f"{path} is already a work tree, on {registered[where] or 'a detached HEAD'} "
            f"rather than {branch}; remove it with `git worktree remove --force {path}`",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if branch_exists(repo, branch):
        _run(repo.root, "worktree", "add", str(path), branch)
    else:
        _run(repo.root, "worktree", "add", "--no-track", "-b", branch, str(path), start)
    return True


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove the work tree at ``path``, changes and all; one that is gone is fine."""
    if path.resolve() in _worktrees(repo):
        # Twice --force: a locked work tree goes too.
        _run(repo.root, "worktree", "remove", "--force", "--force", str(path))
    _run(repo.root, "worktree", "prune")


def prune_worktrees(repo: Repo) -> None:
    """Forget work trees whose folders are gone (their branches can be deleted then)."""
    _run(repo.root, "worktree", "prune")


def delete_branch(repo: Repo, name: str) -> None:
    """Delete branch ``name``, merged or not; a missing one is fine."""
    if branch_exists(repo, name):
        _run(repo.root, "branch", "-D", name)


# --- commits --------------------------------------------------------------------


def commit_all(worktree: Path, message: str, trailers: dict[str, str]) -> str | None:
    """Commit every change in ``worktree``; the new sha, or None when nothing changed."""
    _run(worktree, "add", "-A")
    staged = _run(worktree, "diff", "--cached", "--quiet", ok=(0, 1))
    if staged.returncode == 0:
        return None
    _run(
        worktree,
        *_COMMIT_OPTIONS,
        "commit",
        "--no-verify",
        "--cleanup=whitespace",
        "-m",
        _message(message, trailers),
        identity=True,
    )
    return _out(worktree, "rev-parse", "HEAD")


def commits_since(worktree: Path, since: str) -> list[Commit]:
    """The commits on HEAD's first-parent line after ``since``, oldest first."""
    shas = _out(worktree, "rev-list", "--first-parent", "--reverse", f"{since}..HEAD")
    return [_commit(worktree, sha) for sha in shas.split()]


def _commit(worktree: Path, sha: str) -> Commit:
    fmt = f"%s%x00%(trailers:key={RUN_TRAILER},valueonly)"
    subject, _, run = _out(worktree, "show", "-s", f"--format={fmt}", sha).partition("\0")
    base = _sha_of(worktree, f"{sha}^1") or _empty_tree(worktree)
    numstat = _out(worktree, "diff", "--numstat", "-z", "-M", base, sha)
    files, insertions, deletions = _parse_numstat(numstat)
    author = "choo" if run.strip() else "agent"
    return Commit(sha, subject, author, files, insertions, deletions)


def _empty_tree(worktree: Path) -> str:
    return _out(worktree, "hash-object", "-t", "tree", os.devnull)


def _parse_numstat(text: str) -> tuple[list[str], int, int]:
    """``git diff --numstat -z``: files (renames: the new path), insertions, deletions."""
    items = text.split("\0")
    files: list[str] = []
    insertions = deletions = 0
    i = 0
    while i < len(items):
        added, _, rest = items[i].partition("\t")
        removed, _, path = rest.partition("\t")
        i += 1
        if not added:
            continue
        if not path:  # a rename: the old path, then the new one, follow
            path = items[i + 1]
            i += 2
        files.append(path)
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
    return files, insertions, deletions


# --- merges ---------------------------------------------------------------------


def merge(worktree: Path, branch: str, message: str, trailers: dict[str, str]) -> str | list[str]:
    """Merge ``branch`` into the work tree's branch with a merge commit.

    Returns the merge commit's sha, or, on a conflict, the sorted
    conflicting paths, after ``git merge --abort`` put the tree back.
    """
    result = _run(
        worktree,
        *_COMMIT_OPTIONS,
        "merge",
        "--no-ff",
        "--no-edit",
        "--no-verify",
        "-m",
        _message(message, trailers),
        branch,
        identity=True,
        ok=(0, 1),
    )
    if result.returncode == 0:
        return _out(worktree, "rev-parse", "HEAD")
    conflicts = unmerged_paths(worktree)
    if not conflicts:  # refused before it began (say, a file in the way): nothing to abort
        raise GitError(["git", "merge", branch], worktree, result.stderr or result.stdout)
    _run(worktree, "merge", "--abort")
    return conflicts


def start_merge(worktree: Path, branch: str) -> list[str]:
    """Merge ``branch`` in, leaving conflict markers for an agent to resolve.

    Returns the conflicting paths; [] when it merged cleanly (and is committed).
    A merge already under way (a resumed run) is taken where it stands.
    """
    if _merging(worktree):
        conflicts = unmerged_paths(worktree)
        if not conflicts:
            finish_merge(worktree)
        return conflicts
    result = _run(
        worktree,
        *_COMMIT_OPTIONS,
        "merge",
        "--no-edit",
        "--no-verify",
        branch,
        identity=True,
        ok=(0, 1),
    )
    if result.returncode == 0:
        return []
    conflicts = unmerged_paths(worktree)
    if not conflicts:
        raise GitError(["git", "merge", branch], worktree, result.stderr or result.stdout)
    return conflicts


def unmerged_paths(worktree: Path) -> list[str]:
    """Paths git still holds as conflicted (not yet added)."""
    found = _out(worktree, "diff", "--name-only", "-z", "--diff-filter=U")
    return sorted(set(_z_list(found)))


def conflict_markers(worktree: Path, paths: list[str]) -> list[str]:
    """Those of ``paths`` (relative to ``worktree``) still holding conflict markers."""
    return [path for path in paths if _has_markers(worktree / path)]


def _has_markers(path: Path) -> bool:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return False  # deleted, or a folder now: no markers left in it
    return any(line.startswith((b"<<<<<<<", b">>>>>>>")) for line in lines)


def finish_merge(worktree: Path) -> str:
    """Commit the merge under way in ``worktree`` (all of its files); returns HEAD's sha.

    When no merge is under way (the agent committed it), HEAD is returned as is.
    """
    if _merging(worktree):
        _run(worktree, "add", "-A")
        _run(worktree, *_COMMIT_OPTIONS, "commit", "--no-edit", "--no-verify", identity=True)
    return _out(worktree, "rev-parse", "HEAD")


def _merging(worktree: Path) -> bool:
    return _sha_of(worktree, "MERGE_HEAD") is not None


def is_ancestor(repo: Repo, ancestor: str, descendant: str) -> bool:
    return _is_ancestor(repo.root, ancestor, descendant)


def _is_ancestor(folder: Path, ancestor: str, descendant: str) -> bool:
    found = _run(folder, "merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
    return found.returncode == 0


# --- landing and reading back ---------------------------------------------------


def fast_forward(root: Path, branch: str, to: str) -> str | None:
    """Fast-forward ``branch``, checked out in the work tree ``root``, to ``to``.

    Returns None when done, else why not (nothing was changed then).
    """
    checked_out = current_branch(root)
    if checked_out != branch:
        now = f"{checked_out} is" if checked_out else "a detached HEAD is"
        return f"{branch} is not checked out in {root} ({now})"
    tip = _out(root, "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}")
    if not _is_ancestor(root, tip, to):
        return f"{branch} has moved since the run started (it is at {tip[:12]})"
    modified = _out(root, "status", "--porcelain", "--untracked-files=no")
    if modified:
        count = len(modified.splitlines())
        return f"{root} has {count} modified tracked file{'s' * (count != 1)}"
    try:
        _run(root, "merge", "--ff-only", "--no-verify", to)
    except GitError as exc:
        return f"git merge --ff-only {to} failed: {exc.stderr.strip().splitlines()[0]}"
    return None


def archive_folder(repo: Repo, ref: str, folder_rel: str, into: Path) -> bool:
    """Extract ``folder_rel`` as it is in ``ref`` under ``into``.

    False (and nothing extracted) when ``ref`` has no such folder.
    """
    folder = folder_rel.strip("/")
    folder = "" if folder == "." else folder
    exists = _run(repo.root, "cat-file", "-e", f"{ref}:{folder}", ok=(0, 1, 128))
    if exists.returncode != 0:
        return False
    argv = ["git", "archive", "--format=tar", ref, *(["--", folder] if folder else [])]
    result = subprocess.run(
        argv,
        cwd=repo.root,
        env=_env(repo.root, False),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise GitError(argv, repo.root, result.stderr.decode("utf-8", "replace"))
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        tar.extractall(into, filter="data")
    return True

"""choo.orchestrator.gitwork against real git repositories in tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from choo.errors import ChooError
from choo.orchestrator import gitwork
from choo.orchestrator.gitwork import GitError, Repo
from tests.choo.gitrepo import git, init_repo, isolate_git_config


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git_config(tmp_path, monkeypatch)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository with one commit: a.txt, .gitignore (ignoring *.log), tasks/u/plan.md."""
    repo = init_repo(tmp_path / "repo")
    (repo / "a.txt").write_text("one\ntwo\nthree\n")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "tasks" / "u").mkdir(parents=True)
    (repo / "tasks" / "u" / "plan.md").write_text("plan\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


@pytest.fixture
def repo(root: Path) -> Repo:
    found = gitwork.find_repo(root)
    assert found is not None
    return found


def test_find_repo_names_the_main_tree_and_common_dir(
    root: Path, repo: Repo, tmp_path: Path
) -> None:
    assert repo == Repo(root=root.resolve(), common_dir=(root / ".git").resolve())
    assert gitwork.find_repo(root / "tasks" / "u" / "plan.md") == repo
    # From inside a linked work tree: still the main tree.
    linked = tmp_path / "linked"
    gitwork.add_worktree(repo, linked, "side", "HEAD")
    assert gitwork.find_repo(linked) == repo
    outside = tmp_path / "outside"
    outside.mkdir()
    assert gitwork.find_repo(outside) is None
    assert gitwork.find_repo(tmp_path / "missing" / "folder") is None


def test_head_commit_and_current_branch(root: Path, repo: Repo, tmp_path: Path) -> None:
    head = git(root, "rev-parse", "HEAD")
    assert gitwork.head_commit(repo) == head
    assert gitwork.head_commit(root) == head
    assert gitwork.current_branch(root) == "main"
    git(root, "checkout", "-q", "--detach")
    assert gitwork.current_branch(root) is None
    empty = init_repo(tmp_path / "empty")
    assert gitwork.head_commit(empty) is None
    assert gitwork.current_branch(empty) == "main"


def test_dirty_paths_lists_changes_and_untracked_but_not_ignored(root: Path) -> None:
    assert gitwork.dirty_paths(root) == []
    (root / "a.txt").write_text("changed\n")
    (root / "tasks" / "u" / "new.md").write_text("x")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "file.txt").write_text("x")
    (root / "debug.log").write_text("ignored")
    git(root, "mv", "tasks/u/plan.md", "tasks/u/renamed.md")
    assert gitwork.dirty_paths(root) == [
        "a.txt",
        "deep/er/file.txt",
        "tasks/u/new.md",
        "tasks/u/renamed.md",
    ]
    assert gitwork.dirty_paths(root, under=root / "tasks") == [
        "tasks/u/new.md",
        "tasks/u/renamed.md",
    ]
    assert gitwork.dirty_paths(root, under=Path("deep")) == ["deep/er/file.txt"]


def test_branches(repo: Repo, root: Path) -> None:
    head = git(root, "rev-parse", "HEAD")
    assert not gitwork.branch_exists(repo, "choo/r1")
    assert gitwork.branch_tip(repo, "choo/r1") is None
    gitwork.create_branch(repo, "choo/r1", head)
    assert gitwork.branch_exists(repo, "choo/r1")
    assert gitwork.branch_tip(repo, "choo/r1") == head
    with pytest.raises(GitError) as caught:
        gitwork.create_branch(repo, "choo/r1", head)
    assert "git branch" in str(caught.value) and str(root) in str(caught.value)
    assert "already exists" in caught.value.stderr
    assert caught.value.command[:2] == ["git", "branch"]
    assert isinstance(caught.value, ChooError)
    gitwork.delete_branch(repo, "choo/r1")
    assert not gitwork.branch_exists(repo, "choo/r1")
    gitwork.delete_branch(repo, "choo/r1")  # missing is fine


def test_add_worktree_creates_then_reuses(repo: Repo, root: Path, tmp_path: Path) -> None:
    path = tmp_path / "space" / "r1" / "api"
    assert gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD") is True
    assert (path / "a.txt").read_text() == "one\ntwo\nthree\n"
    assert gitwork.current_branch(path) == "choo/r1-api"
    (path / "work.txt").write_text("in progress")
    # Reuse (a resumed run): the same work tree, its files untouched.
    assert gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD") is False
    assert (path / "work.txt").read_text() == "in progress"
    # On another branch: refused, with the way out.
    with pytest.raises(GitError, match="already a work tree"):
        gitwork.add_worktree(repo, path, "choo/r1-other", "HEAD")
    # The main tree saw none of it.
    assert gitwork.dirty_paths(root) == []


def test_add_worktree_reattaches_an_existing_branch(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "wt"
    gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD")
    (path / "b.txt").write_text("b")
    sha = gitwork.commit_all(path, "api #1: b", {})
    gitwork.remove_worktree(repo, path)
    assert not path.exists()
    assert gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD") is True
    assert gitwork.head_commit(path) == sha


def test_remove_worktree_discards_changes_and_missing_is_fine(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "wt"
    gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD")
    (path / "untracked.txt").write_text("x")
    (path / "a.txt").write_text("modified")
    gitwork.remove_worktree(repo, path)
    assert not path.exists()
    assert "wt" not in git(repo.root, "worktree", "list")
    gitwork.remove_worktree(repo, path)
    assert gitwork.branch_exists(repo, "choo/r1-api")  # the branch stays


def test_commit_all_with_trailers(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "wt"
    gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD")
    assert gitwork.commit_all(path, "api #1: nothing", {"Choo-Run": "r1"}) is None
    (path / "b.txt").write_text("b\n")
    trailers = {"Choo-Run": "r1", "Choo-Attempt": "2"}
    sha = gitwork.commit_all(path, "api #1: add b", trailers)
    assert sha == git(path, "rev-parse", "HEAD")
    assert git(path, "log", "-1", "--format=%s") == "api #1: add b"
    assert git(path, "log", "-1", "--format=%(trailers)").splitlines() == [
        "Choo-Run: r1",
        "Choo-Attempt: 2",
    ]
    body = git(path, "log", "-1", "--format=%B")
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=body, capture_output=True, text=True
    ).stdout
    assert parsed.splitlines() == ["Choo-Run: r1", "Choo-Attempt: 2"]
    assert git(path, "log", "-1", "--format=%ae") == "dev@example.com"


def test_commit_all_skips_hooks(repo: Repo, tmp_path: Path) -> None:
    hook = repo.common_dir / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    path = tmp_path / "wt"
    gitwork.add_worktree(repo, path, "choo/r1-api", "HEAD")
    (path / "b.txt").write_text("b\n")
    assert gitwork.commit_all(path, "api #1: b", {}) is not None


def test_identity_fallback_without_user_email(tmp_path: Path) -> None:
    root = init_repo(tmp_path / "anon", identity=False)
    (root / "a.txt").write_text("a\n")
    sha = gitwork.commit_all(root, "first", {"Choo-Run": "r1"})
    assert sha is not None
    assert git(root, "log", "-1", "--format=%an <%ae> / %cn <%ce>") == (
        "choo <choo@localhost> / choo <choo@localhost>"
    )
    # An email but no name: the name alone falls back.
    git(root, "config", "user.email", "dev@example.com")
    (root / "b.txt").write_text("b\n")
    gitwork.commit_all(root, "second", {})
    assert git(root, "log", "-1", "--format=%an <%ae>") == "choo <dev@example.com>"


def test_commits_since_with_stats_and_authors(repo: Repo, root: Path, tmp_path: Path) -> None:
    base = git(root, "rev-parse", "HEAD")
    path = tmp_path / "wt"
    gitwork.add_worktree(repo, path, "choo/r1-api", base)
    # The agent commits on its own: a rename and a binary file.
    git(path, "mv", "tasks/u/plan.md", "tasks/u/moved.md")
    (path / "blob.bin").write_bytes(b"\0\1\2\3" * 10)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "agent: move and add a blob")
    # Then choo commits the rest.
    (path / "a.txt").write_text("one\nTWO\nthree\nfour\n")
    (path / "c.txt").write_text("c1\nc2\n")
    gitwork.commit_all(path, "api #1: edit", {"Choo-Run": "r1", "Choo-Attempt": "1"})
    agent, choo = gitwork.commits_since(path, base)
    assert agent.subject == "agent: move and add a blob"
    assert agent.author == "agent"
    assert sorted(agent.files) == ["blob.bin", "tasks/u/moved.md"]
    assert (agent.insertions, agent.deletions) == (0, 0)
    assert choo.subject == "api #1: edit"
    assert choo.author == "choo"
    assert choo.sha == git(path, "rev-parse", "HEAD")
    assert sorted(choo.files) == ["a.txt", "c.txt"]
    assert (choo.insertions, choo.deletions) == (4, 1)
    assert gitwork.commits_since(path, choo.sha) == []


def _two_branches_editing_line_two(repo: Repo, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Run branch choo/r1 with its _merge tree; units x and y both change line two of a.txt."""
    base = gitwork.head_commit(repo)
    assert base is not None
    gitwork.create_branch(repo, "choo/r1", base)
    merge_tree = tmp_path / "space" / "_merge"
    gitwork.add_worktree(repo, merge_tree, "choo/r1", base)
    trees = []
    for unit in ("x", "y"):
        path = tmp_path / "space" / unit
        gitwork.add_worktree(repo, path, f"choo/r1-{unit}", "choo/r1")
        (path / "a.txt").write_text(f"one\ntwo by {unit}\nthree\n")
        (path / f"{unit}.txt").write_text(unit)
        gitwork.commit_all(path, f"{unit} #1: edit", {"Choo-Run": "r1"})
        trees.append(path)
    return merge_tree, trees[0], trees[1]


def test_merge_success_then_conflict_aborted(repo: Repo, tmp_path: Path) -> None:
    merge_tree, _, _ = _two_branches_editing_line_two(repo, tmp_path)
    sha = gitwork.merge(merge_tree, "choo/r1-x", "merge x", {"Choo-Run": "r1"})
    assert isinstance(sha, str)
    assert gitwork.branch_tip(repo, "choo/r1") == sha
    assert git(merge_tree, "log", "-1", "--format=%P").count(" ") == 1  # a merge commit
    assert git(merge_tree, "log", "-1", "--format=%(trailers)") == "Choo-Run: r1"
    assert (merge_tree / "x.txt").exists()
    conflict = gitwork.merge(merge_tree, "choo/r1-y", "merge y", {"Choo-Run": "r1"})
    assert conflict == ["a.txt"]
    # Aborted: the tree is clean, still at the first merge.
    assert gitwork.dirty_paths(merge_tree) == []
    assert gitwork.head_commit(merge_tree) == sha
    assert not (merge_tree / "y.txt").exists()


def test_start_merge_leaves_markers_then_finish(repo: Repo, tmp_path: Path) -> None:
    merge_tree, _, y_tree = _two_branches_editing_line_two(repo, tmp_path)
    gitwork.merge(merge_tree, "choo/r1-x", "merge x", {})
    assert gitwork.start_merge(y_tree, "choo/r1") == ["a.txt"]
    assert gitwork.unmerged_paths(y_tree) == ["a.txt"]
    assert gitwork.conflict_markers(y_tree, ["a.txt", "x.txt", "gone.txt"]) == ["a.txt"]
    # The agent resolves it.
    (y_tree / "a.txt").write_text("one\ntwo by x and y\nthree\n")
    assert gitwork.conflict_markers(y_tree, ["a.txt"]) == []
    sha = gitwork.finish_merge(y_tree)
    assert sha == gitwork.head_commit(y_tree)
    assert gitwork.unmerged_paths(y_tree) == []
    assert gitwork.dirty_paths(y_tree) == []
    assert gitwork.is_ancestor(repo, "choo/r1", sha)
    # Nothing under way: HEAD as it is.
    assert gitwork.finish_merge(y_tree) == sha
    # Now the unit merges into the run branch cleanly.
    assert isinstance(gitwork.merge(merge_tree, "choo/r1-y", "merge y", {}), str)
    assert (merge_tree / "a.txt").read_text() == "one\ntwo by x and y\nthree\n"


def test_start_merge_clean_is_committed(repo: Repo, tmp_path: Path) -> None:
    base = gitwork.head_commit(repo)
    assert base is not None
    gitwork.create_branch(repo, "choo/r1", base)
    run_tree = tmp_path / "_merge"
    gitwork.add_worktree(repo, run_tree, "choo/r1", base)
    unit = tmp_path / "u"
    gitwork.add_worktree(repo, unit, "choo/r1-u", base)
    (unit / "u.txt").write_text("u")
    gitwork.commit_all(unit, "u #1", {})
    (run_tree / "r.txt").write_text("r")
    gitwork.commit_all(run_tree, "other unit", {})
    assert gitwork.start_merge(unit, "choo/r1") == []
    assert (unit / "r.txt").exists()
    assert gitwork.dirty_paths(unit) == []
    assert gitwork.is_ancestor(repo, "choo/r1", "choo/r1-u")


def test_is_ancestor(repo: Repo, root: Path) -> None:
    base = git(root, "rev-parse", "HEAD")
    (root / "b.txt").write_text("b")
    later = gitwork.commit_all(root, "later", {})
    assert later is not None
    assert gitwork.is_ancestor(repo, base, later)
    assert not gitwork.is_ancestor(repo, later, base)


def _run_branch_ahead(repo: Repo, tmp_path: Path) -> str:
    base = gitwork.head_commit(repo)
    assert base is not None
    tree = tmp_path / "_merge"
    gitwork.add_worktree(repo, tree, "choo/r1", base)
    (tree / "result.txt").write_text("result")
    sha = gitwork.commit_all(tree, "the run's result", {})
    assert sha is not None
    return sha


def test_fast_forward_lands(repo: Repo, root: Path, tmp_path: Path) -> None:
    result = _run_branch_ahead(repo, tmp_path)
    (root / "untracked.txt").write_text("an untracked file does not stop it")
    assert gitwork.fast_forward(root, "main", result) is None
    assert gitwork.head_commit(root) == result
    assert (root / "result.txt").read_text() == "result"


def test_fast_forward_refuses_when_the_branch_moved(repo: Repo, root: Path, tmp_path: Path) -> None:
    result = _run_branch_ahead(repo, tmp_path)
    (root / "b.txt").write_text("b")
    moved = gitwork.commit_all(root, "user's own work", {})
    reason = gitwork.fast_forward(root, "main", result)
    assert reason is not None and "main has moved" in reason
    assert gitwork.head_commit(root) == moved


def test_fast_forward_refuses_a_dirty_tree(repo: Repo, root: Path, tmp_path: Path) -> None:
    before = gitwork.head_commit(root)
    result = _run_branch_ahead(repo, tmp_path)
    (root / "a.txt").write_text("edited by the user")
    reason = gitwork.fast_forward(root, "main", result)
    assert reason is not None and "1 modified tracked file" in reason
    assert gitwork.head_commit(root) == before
    assert (root / "a.txt").read_text() == "edited by the user"


def test_fast_forward_refuses_another_branch(repo: Repo, root: Path, tmp_path: Path) -> None:
    result = _run_branch_ahead(repo, tmp_path)
    git(root, "checkout", "-q", "-b", "feature")
    reason = gitwork.fast_forward(root, "main", result)
    assert reason is not None and "main is not checked out" in reason and "feature" in reason
    assert gitwork.branch_tip(repo, "main") != result
    git(root, "checkout", "-q", "--detach")
    reason = gitwork.fast_forward(root, "main", result)
    assert reason is not None and "detached HEAD" in reason


def test_archive_folder(repo: Repo, root: Path, tmp_path: Path) -> None:
    into = tmp_path / "out"
    assert gitwork.archive_folder(repo, "HEAD", "tasks", into)
    assert (into / "tasks" / "u" / "plan.md").read_text() == "plan\n"
    assert not (into / "a.txt").exists()
    assert not gitwork.archive_folder(repo, "HEAD", "nope", tmp_path / "out2")
    assert gitwork.archive_folder(repo, "HEAD", ".", tmp_path / "whole")
    assert (tmp_path / "whole" / "a.txt").exists()


def test_git_error_names_command_folder_and_stderr(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(GitError) as caught:
        gitwork.create_branch(repo, "choo/x", "no-such-commit")
    message = str(caught.value)
    assert message.startswith("`git branch --no-track choo/x no-such-commit` failed in ")
    assert str(repo.root) in message
    assert "not a valid" in message


def test_merge_refused_before_it_began_raises(repo: Repo, tmp_path: Path) -> None:
    merge_tree, _, _ = _two_branches_editing_line_two(repo, tmp_path)
    before = gitwork.head_commit(merge_tree)
    (merge_tree / "x.txt").write_text("an untracked file in the way")
    with pytest.raises(GitError, match="would be overwritten"):
        gitwork.merge(merge_tree, "choo/r1-x", "merge x", {})
    assert gitwork.head_commit(merge_tree) == before
    assert (merge_tree / "x.txt").read_text() == "an untracked file in the way"


def test_start_merge_again_takes_the_merge_where_it_stands(repo: Repo, tmp_path: Path) -> None:
    merge_tree, _, y_tree = _two_branches_editing_line_two(repo, tmp_path)
    gitwork.merge(merge_tree, "choo/r1-x", "merge x", {})
    assert gitwork.start_merge(y_tree, "choo/r1") == ["a.txt"]
    # A resumed run starts it again: the same conflict, markers untouched.
    assert gitwork.start_merge(y_tree, "choo/r1") == ["a.txt"]
    assert gitwork.conflict_markers(y_tree, ["a.txt"]) == ["a.txt"]
    # The agent resolved and added it, then the run stopped: resuming commits the merge.
    (y_tree / "a.txt").write_text("one\nresolved\nthree\n")
    git(y_tree, "add", "a.txt")
    assert gitwork.start_merge(y_tree, "choo/r1") == []
    assert gitwork.dirty_paths(y_tree) == []
    assert gitwork.is_ancestor(repo, "choo/r1", "choo/r1-y")

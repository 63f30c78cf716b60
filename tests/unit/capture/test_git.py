from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import git as git_module
from pipetrail.capture.git import GitState, capture_git
from pipetrail.capture.git_probe import RepositoryProbe, git_state, probe_repository
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system config, a fixed identity, and no repository above tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "test@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def run_git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, input=stdin
    ).stdout


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    def make(*, commit: bool = True) -> Path:
        repo = tmp_path / "repo"
        repo.mkdir()
        run_git(repo, "init", "-q", "-b", "main")
        (repo / "model.py").write_text("LR = 0.1\n")
        (repo / ".gitignore").write_text("*.log\n")
        if commit:
            run_git(repo, "add", ".")
            run_git(repo, "commit", "-q", "-m", "initial")
        return repo

    return make


def head(repo: Path) -> str:
    return run_git(repo, "rev-parse", "HEAD").decode().strip()


def test_clean_repository(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    (repo / "train.log").write_text("ignored\n")

    state = capture_git(repo)

    assert state == GitState(
        commit=head(repo),
        branch="main",
        dirty=False,
        diff=b"",
        untracked=[],
        root=str(repo.resolve()),
    )


def test_dirty_tracked_change_is_in_the_diff(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    (repo / "model.py").write_text("LR = 0.2\n")
    (repo / "data.py").write_text("SPLIT = 0.8\n")
    run_git(repo, "add", "data.py")  # staged changes are included too

    state = capture_git(repo)

    assert state is not None
    assert state.dirty
    assert state.untracked == []
    assert b"-LR = 0.1\n+LR = 0.2\n" in state.diff
    assert b"+SPLIT = 0.8\n" in state.diff
    # The diff is exactly what separates HEAD from the working tree.
    run_git(repo, "apply", "--check", "-R", stdin=state.diff)


def test_binary_changes_are_applicable(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    (repo / "weights.bin").write_bytes(bytes(range(256)) * 4)
    run_git(repo, "add", "weights.bin")

    state = capture_git(repo)

    assert state is not None
    assert b"GIT binary patch" in state.diff
    run_git(repo, "apply", "--check", "-R", stdin=state.diff)


def test_untracked_files_make_the_tree_dirty(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    (repo / "new.py").write_text("x = 1\n")
    (repo / "dir with space").mkdir()
    (repo / "dir with space" / "café.py").write_text("y = 2\n")
    (repo / "debug.log").write_text("ignored\n")

    state = capture_git(repo)

    assert state is not None
    assert state.dirty
    assert state.diff == b""
    assert state.untracked == ["dir with space/café.py", "new.py"]


def test_a_subdirectory_reports_the_root_and_root_relative_paths(
    make_repo: Callable[..., Path],
) -> None:
    repo = make_repo()
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("")

    state = capture_git(repo / "src")

    assert state is not None
    assert state.root == str(repo.resolve())
    assert state.untracked == ["src/a.py"]


def test_a_file_path_means_its_repository(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()

    state = capture_git(repo / "model.py")

    assert state is not None
    assert state.commit == head(repo)


def test_detached_head_has_no_branch(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    run_git(repo, "checkout", "-q", "--detach")

    state = capture_git(repo)

    assert state is not None
    assert state.branch is None
    assert state.commit == head(repo)
    assert not state.dirty


def test_staged_rename_is_parsed(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    run_git(repo, "mv", "model.py", "net.py")

    state = capture_git(repo)

    assert state is not None
    assert state.dirty
    assert state.untracked == []
    run_git(repo, "apply", "--check", "-R", stdin=state.diff)


def test_repository_without_commits(make_repo: Callable[..., Path]) -> None:
    repo = make_repo(commit=False)

    empty = capture_git(repo)
    assert empty is not None
    assert (empty.commit, empty.branch, empty.diff) == (None, "main", b"")
    assert empty.dirty
    assert empty.untracked == [".gitignore", "model.py"]

    run_git(repo, "add", "model.py")
    state = capture_git(repo)

    assert state is not None
    assert state.commit is None
    assert state.branch == "main"
    assert state.untracked == [".gitignore"]
    assert b"+LR = 0.1\n" in state.diff  # against the empty tree


def test_not_a_repository(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()

    assert capture_git(folder) is None
    assert capture_git(tmp_path / "missing") is None


def test_outside_any_repository_git_is_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "plain" / "deeper"
    folder.mkdir(parents=True)

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"git was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_git)
    assert capture_git(folder) is None


def test_git_state_is_capture_git_and_imports_it_only_where_a_repository_may_be(
    make_repo: Callable[..., Path], tmp_path: Path
) -> None:
    repo = make_repo()
    (repo / "model.py").write_text("LR = 0.2\n")
    plain = tmp_path / "plain"
    plain.mkdir()

    assert git_state(repo) == capture_git(repo)
    assert git_state(plain) is None
    assert git_state(tmp_path / "missing") is None
    probe = (
        "import sys\nfrom pathlib import Path\nfrom pipetrail.capture.git_probe import git_state\n"
        "found = git_state(Path(sys.argv[1]))\n"
        "print(found is not None, 'pipetrail.capture.git' in sys.modules)"
    )
    for folder, expected in ((plain, "False False"), (repo, "True True")):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(folder)], capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == expected.split()


def test_git_state_walks_up_the_folders_once(
    make_repo: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    started: list[tuple[str, ...]],
) -> None:
    repo = make_repo()
    deep = repo / "src" / "deep"
    deep.mkdir(parents=True)
    deep = deep.resolve()  # no symbolic link on the way: git's walk is this one
    looked: list[str] = []
    lexists = os.path.lexists

    def counting(path: str) -> bool:
        if os.path.basename(path) == ".git":
            looked.append(path)
        return lexists(path)

    monkeypatch.setattr(os.path, "lexists", counting)
    state = git_state(deep)

    assert state is not None
    assert state.root == str(deep.parent.parent)
    # Each folder from the project up to the top once; git is asked for the status only.
    assert looked == [str(folder / ".git") for folder in (deep, deep.parent, deep.parent.parent)]
    assert [args[0] for args in started] == ["status"]


def test_the_probe_says_where_git_would_look(
    make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo()
    plain = tmp_path / "plain"
    plain.mkdir()
    (repo / "sub").mkdir()

    assert probe_repository(plain) == RepositoryProbe(possible=False, top=None)
    assert probe_repository(repo / ".git" / "refs") == RepositoryProbe(possible=True, top=None)
    top = str(repo.resolve())
    assert probe_repository(repo / "sub") == RepositoryProbe(possible=True, top=top)
    # From below a ceiling folder git does not look in it: git is left to decide.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", top)
    assert probe_repository(repo / "sub") == RepositoryProbe(possible=True, top=None)
    assert probe_repository(repo) == RepositoryProbe(possible=True, top=top)


def test_a_worktree_whose_git_entry_is_a_file_is_found(
    make_repo: Callable[..., Path], tmp_path: Path
) -> None:
    repo = make_repo()
    linked = tmp_path / "linked"
    run_git(repo, "worktree", "add", "-q", "-b", "other", str(linked))
    assert (linked / ".git").is_file()

    (linked / "sub").mkdir()
    state = capture_git(linked / "sub")

    assert state is not None
    assert (state.root, state.branch, state.commit) == (str(linked.resolve()), "other", head(repo))


def test_git_dir_in_the_environment_is_honoured(
    make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(repo))

    state = capture_git(elsewhere)

    assert state is not None
    assert state.commit == head(repo)


def test_inside_the_git_folder_git_still_decides(
    make_repo: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo()
    # A git folder, not a working tree: git is asked, refuses, and nothing is recorded.
    assert capture_git(repo / ".git" / "refs") is None
    assert "`git rev-parse` failed" in caplog.text


def test_git_not_installed(
    make_repo: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    assert capture_git(repo) is None


def test_git_failure_is_logged_and_gives_none(
    make_repo: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo()
    (repo / ".git" / "index").write_bytes(b"garbage")  # a corrupt index: status fails

    assert capture_git(repo) is None
    assert "`git status` failed" in caplog.text


def test_record_names_the_diff_by_digest(make_repo: Callable[..., Path]) -> None:
    repo = make_repo()
    (repo / "model.py").write_text("LR = 0.3\n")
    state = capture_git(repo)
    assert state is not None

    record = state.to_record()

    assert json.loads(json.dumps(record)) == record
    assert record == {
        "schema_version": 1,
        "root": str(repo.resolve()),
        "commit": head(repo),
        "branch": "main",
        "dirty": True,
        "untracked": [],
        "diff_digest": digest_bytes(state.diff),
        "diff_size": len(state.diff),
    }
    clean = GitState(commit="c", branch=None, dirty=False, diff=b"", untracked=[], root="/r")
    assert clean.to_record()["diff_digest"] is None


def test_repr_omits_the_diff() -> None:
    state = GitState(commit="c", branch="b", dirty=True, diff=b"secret", untracked=[], root="/")
    assert "secret" not in repr(state)


# -- how many git processes; the same facts as git's own answer -------------------------
@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The argument lists of the git processes capture_git starts."""
    calls: list[tuple[str, ...]] = []
    real = git_module._start

    def counting(cwd: Any, env: dict[str, str], *args: str) -> Any:
        calls.append(args)
        return real(cwd, env, *args)

    monkeypatch.setattr(git_module, "_start", counting)
    return calls


def _asked_git(path: Path) -> Any:
    """capture_git of ``path`` told that the folders do not say where the top is."""
    return capture_git(path, probe=RepositoryProbe(possible=True, top=None))


def test_a_clean_tree_costs_one_git_process(
    make_repo: Callable[..., Path], started: list[tuple[str, ...]]
) -> None:
    repo = make_repo()
    state = capture_git(repo)
    assert state is not None
    assert not state.dirty
    assert [args[0] for args in started] == ["status"]


def test_a_changed_tree_adds_the_diff_only(
    make_repo: Callable[..., Path], started: list[tuple[str, ...]]
) -> None:
    repo = make_repo()
    (repo / "model.py").write_text("LR = 0.2\n")
    state = capture_git(repo)
    assert state is not None
    assert state.dirty
    assert state.diff
    assert [args[0] for args in started] == ["status", "diff"]


def _layouts(repo: Path, tmp_path: Path) -> dict[str, Path]:
    (repo / "src" / "deep").mkdir(parents=True)
    (repo / "src" / "deep" / "new.py").write_text("")
    (repo / "model.py").write_text("LR = 0.3\n")
    link = tmp_path / "link"
    link.symlink_to(repo, target_is_directory=True)
    linked = tmp_path / "linked"
    run_git(repo, "worktree", "add", "-q", "-b", "other", str(linked))
    (linked / "extra.txt").write_text("x")
    return {
        "top": repo,
        "subfolder": repo / "src" / "deep",
        "a file": repo / "model.py",
        "through a symlink": link / "src",
        "linked worktree": linked,
    }


def test_the_facts_are_those_git_gives(
    make_repo: Callable[..., Path],
    tmp_path: Path,
    started: list[tuple[str, ...]],
) -> None:
    repo = make_repo()
    for name, path in _layouts(repo, tmp_path).items():
        started.clear()
        ours = capture_git(path)
        assert "rev-parse" not in [args[0] for args in started], name
        asked = _asked_git(path)
        assert ours is not None, name
        assert ours == asked, name
        assert (
            ours.root
            == run_git(path if path.is_dir() else path.parent, "rev-parse", "--show-toplevel")
            .decode()
            .strip()
        ), name


def test_a_worktree_set_in_the_config_lets_git_decide(
    tmp_path: Path, started: list[tuple[str, ...]]
) -> None:
    # The repository's folder is not inside its working tree: core.worktree says where.
    tree, store = tmp_path / "tree", tmp_path / "store"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    run_git(tmp_path, "init", "-q", "-b", "main", str(store))
    os.rename(store / ".git", store / "repo.git")
    (store / ".git").write_text("gitdir: repo.git\n")
    run_git(store, "config", "core.worktree", str(tree))
    state = capture_git(store)
    assert "rev-parse" in [args[0] for args in started]
    expected = subprocess.run(
        ["git", "-C", str(store), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert state is not None
    assert state.root == expected == str(tree.resolve())
    assert state.untracked == ["a.txt"]

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipetrail.capture import owner
from pipetrail.capture.owner import (
    current_host,
    current_owner,
    identity_is_alive,
    process_identity,
    process_is_alive,
    process_start_time,
)

has_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process checks")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_owner_from_the_actor_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETRAIL_ACTOR", "  ci-bot@github  ")
    assert current_owner() == "ci-bot@github"


def test_owner_defaults_to_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPETRAIL_ACTOR", "")  # empty counts as unset
    assert current_owner() == f"{getpass.getuser()}@{current_host()}"


@posix
def test_owner_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.delenv("PIPETRAIL_ACTOR", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_user)
    assert current_owner() == f"uid{os.getuid()}@{current_host()}"


def test_host_is_this_machine() -> None:
    import socket

    assert current_host() == socket.gethostname()


@posix
def test_liveness_of_processes_on_this_host() -> None:
    host = current_host()
    assert process_is_alive(host, os.getpid()) is True
    assert process_is_alive(host, dead_pid()) is False
    assert process_is_alive(host, 0) is False
    assert process_is_alive(host, -1) is False
    assert process_is_alive(host, 2**40) is False


def test_other_hosts_cannot_be_judged() -> None:
    assert process_is_alive(current_host() + "-elsewhere", os.getpid()) is None


def state_of(pid: int) -> str | None:
    fields = owner._proc_stat_fields(pid)
    return fields[0] if fields else None


@has_proc
def test_a_zombie_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        # Not reaped yet: the child stays a zombie until wait().
        while state_of(proc.pid) != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process_is_alive(current_host(), proc.pid) is False
        assert not identity_is_alive(f"{proc.pid}:?")
    finally:
        proc.wait()


@has_proc
def test_start_time_and_identity() -> None:
    start = process_start_time(os.getpid())
    assert isinstance(start, int)
    assert start > 0
    assert process_start_time(os.getpid()) == start
    assert process_identity(os.getpid()) == f"{os.getpid()}:{start}"
    assert process_start_time(dead_pid()) is None


@has_proc
def test_identity_detects_a_recycled_pid() -> None:
    me = process_identity(os.getpid())
    pid, start = me.split(":")

    assert identity_is_alive(me)
    assert not identity_is_alive(f"{pid}:{int(start) + 1}")  # same pid, another process


@posix
def test_identity_of_a_dead_process() -> None:
    assert not identity_is_alive(process_identity(dead_pid()))


@posix
def test_identity_without_a_start_time_checks_the_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owner, "process_start_time", lambda pid: None)

    identity = process_identity(os.getpid())

    assert identity == f"{os.getpid()}:?"
    assert identity_is_alive(identity)


@pytest.mark.parametrize("bad", ["", "123", "abc:1", "1:abc", "-1:5", "1:2:3", " 1:2"])
def test_malformed_identity_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="expected '<pid>:<starttime>'"):
        identity_is_alive(bad)


def test_stat_line_with_parentheses_in_the_command_name() -> None:
    fields = [str(i) for i in range(3, 53)]
    fields[0] = "S"
    line = b"4242 (evil) name (x)) " + " ".join(fields).encode()

    parsed = owner._split_stat(line)

    assert parsed is not None
    assert parsed[0] == "S"
    assert parsed[22 - 3] == "22"
    assert owner._split_stat(b"garbage") is None

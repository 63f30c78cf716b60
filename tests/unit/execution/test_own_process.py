"""The process identity a run records is read once per process, and anew after a fork."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pipetrail.capture import process_identity
from pipetrail.execution import run_events

if TYPE_CHECKING:
    import pytest


def test_the_identity_is_this_process_s_and_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = run_events._own_process()
    assert first == process_identity(os.getpid())
    monkeypatch.setattr(run_events, "process_identity", lambda pid: "read again")
    assert run_events._own_process() == first


def test_a_forked_child_records_its_own_identity() -> None:
    parent = run_events._own_process()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its identity and the one it would record
        os.close(read)
        os.write(write, f"{run_events._own_process()}|{process_identity(os.getpid())}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        recorded, actual = pipe.read().split("|")
    os.waitpid(pid, 0)
    assert recorded == actual
    assert recorded != parent

"""Quotas: how many steps may execute at once, and how much CPU a day, per project and user.

``[quotas]`` in ``pipetrail.toml`` limits the project (every user together), and
``[quotas.user]`` each user; ``[quotas.users.NAME]`` replaces ``[quotas.user]`` for one
user::

    [quotas]
    concurrent_steps = 16
    cpu_hours_per_day = 200
    [quotas.user]
    concurrent_steps = 4
    cpu_hours_per_day = 24
    [quotas.users.alice]
    cpu_hours_per_day = 100

A user is the owner a run records (:func:`~pipetrail.capture.owner.current_owner`):
``$PIPETRAIL_ACTOR``, else ``NAME@HOST``, where ``NAME`` alone identifies the user on
every host.

Checked by the coordinator before each step that executes (cache hits cost nothing),
inside the write transaction that records its ``step.started``, under the ledger's write
lock (:meth:`RunQuotas.admit`): two coordinators asking at once are served one after
the other, and the second sees the first one's step (see
docs/adr/0030-quota-admission-under-the-ledger-lock.md):

* ``concurrent_steps``: the steps executing now, counted from the ledger (step runs
  recorded as executing in running runs of other processes) and in this process (its
  runs' steps in flight, whether their start is appended yet or not). A run's own steps
  wait for each other (the scheduler does not submit past the limit); a step finding
  the quota used up by other runs alone is refused;
* ``cpu_hours_per_day``: the CPU time the step runs that ended since midnight UTC
  recorded (their ``resources.cpu_ns``, on every executor), summed, with the run's own
  ended steps whose end is still queued, and those of runs deleted since (a deletion
  gives no CPU back); once it reaches the limit, every step is refused until the next
  UTC day. The day is read once per run, then only the step
  events appended since.

A refusal is a :class:`~pipetrail.errors.QuotaExceededError` naming the quota, its limit
and what is in use: the step does not start and the run is recorded as failed with
that message (in a sweep, each remaining point is refused the same way). Without a
``[quotas]`` table (or when it limits only other users) a run costs one read of the
file's bytes and nothing more: no read of the ledger, no transaction of its own.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture.owner import current_owner
from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import ProjectError, QuotaExceededError
from pipetrail.ledger.quota_reads import (
    cpu_seconds_after,
    cpu_seconds_queued,
    cpu_seconds_since,
    executing_step_runs,
    newest_seq,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.run_state import RunState

__all__ = [
    "QuotaLimits",
    "QuotaSettings",
    "QuotaWait",
    "RunQuotas",
    "load_quotas",
    "quotas_in",
    "run_quotas",
    "user_name",
]

_KEYS = ("concurrent_steps", "cpu_hours_per_day")
#: Seconds a count read from the ledger is reused before it is read again.
_READ_AGAIN_S = 0.5


@dataclass(frozen=True)
class QuotaLimits:
    """The limits of one holder (the project, or a user); None: no limit."""

    concurrent_steps: int | None = None
    cpu_hours_per_day: float | None = None

    @property
    def empty(self) -> bool:
        """Whether it limits nothing."""
        return self.concurrent_steps is None and self.cpu_hours_per_day is None


@dataclass(frozen=True)
class QuotaSettings:
    """The ``[quotas]`` table.

    Attributes:
        project: the limits of the whole project.
        user: the limits of each user without a table of its own.
        users: user name -> its limits (instead of ``user``).
    """

    project: QuotaLimits = QuotaLimits()
    user: QuotaLimits = QuotaLimits()
    users: dict[str, QuotaLimits] = field(default_factory=dict)

    def for_user(self, name: str) -> QuotaLimits:
        """The limits that apply to user ``name``."""
        return self.users.get(name, self.user)


def user_name(owner: str) -> str:
    """The user of a recorded owner: ``alice`` for ``alice@host``."""
    return owner.partition("@")[0] or owner


def _limits(path: Path, where: str, table: Any, *, nested: tuple[str, ...] = ()) -> QuotaLimits:
    if not isinstance(table, dict):
        raise ProjectError(
            f"{path}: '{where}' must be a table ([{where}]), got {table!r}; fix the file"
        )
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in nested:
            continue
        if key not in _KEYS:
            known = ", ".join((*_KEYS, *nested))
            raise ProjectError(
                f"{path}: unknown key '{where}.{key}'; the known keys of [{where}] are "
                f"{known}; fix the file"
            )
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if key == "concurrent_steps":
            if not isinstance(number, int) or number < 1:
                raise ProjectError(
                    f"{path}: '{where}.{key}' must be a whole number of steps >= 1, got "
                    f"{value!r}; fix the file"
                )
        elif number is None or not 0 < number < float("inf"):
            raise ProjectError(
                f"{path}: '{where}.{key}' must be a number of CPU-hours above 0, got "
                f"{value!r}; fix the file"
            )
        values[key] = number
    return QuotaLimits(**values)


def parse_quotas(path: Path, table: Any) -> QuotaSettings:
    """Validate a ``[quotas]`` table (see the module docstring).

    Raises:
        ProjectError: a key is unknown or a value wrong; names the file and the key.
    """
    project = _limits(path, "quotas", table, nested=("user", "users"))
    user = _limits(path, "quotas.user", table.get("user", {}))
    users_table = table.get("users", {})
    if not isinstance(users_table, dict):
        raise ProjectError(
            f"{path}: 'quotas.users' must be a table of [quotas.users.NAME] tables, got "
            f"{users_table!r}; fix the file"
        )
    users = {
        str(name): _limits(path, f"quotas.users.{name}", limits)
        for name, limits in users_table.items()
    }
    return QuotaSettings(project, user, users)


def load_quotas(root: Path) -> QuotaSettings | None:
    """The project's ``[quotas]``, or None when it has none.

    Raises:
        ProjectError: the table is wrong (see :func:`parse_quotas`).
    """
    from pipetrail.config_tables import project_table

    try:
        table = project_table(root, "quotas")
    except ProjectError:
        return None  # the project's own configuration check reports a broken file
    return quotas_in(root, table)


def quotas_in(root: Path, table: Any) -> QuotaSettings | None:
    """The quotas ``table`` (the ``[quotas]`` table read from ``root``'s file) sets, or None.

    Raises:
        ProjectError: the table is wrong (see :func:`parse_quotas`).
    """
    from pipetrail.config_tables import CONFIG_FILE

    if table is None:
        return None
    settings = parse_quotas(root / CONFIG_FILE, table)
    if settings.project.empty and settings.user.empty and not settings.users:
        return None
    return settings


# -- this process's steps in flight (every run, every thread) ------------------------------
_LOCK = threading.Lock()
_IN_FLIGHT: dict[str, tuple[str, int]] = {}  # run id -> (user, steps executing)


def _in_process(user: str | None) -> tuple[int, set[str]]:
    """Steps executing in this process (of ``user``'s runs, or all); this process's runs."""
    with _LOCK:
        count = sum(n for who, n in _IN_FLIGHT.values() if user is None or who == user)
        return count, set(_IN_FLIGHT)


class QuotaWait(QuotaExceededError):
    """A concurrency quota is full and the run's own steps are among those executing.

    The concurrent scheduler waits for one of them to end and asks again; elsewhere it
    is a refusal like any other.
    """


class RunQuotas:
    """The quotas one run is held to (built by :func:`run_quotas`)."""

    def __init__(self, state: RunState, settings: QuotaSettings, owner: str) -> None:
        self.state = state
        self.settings = settings
        self.user = user_name(owner)
        own = f"[quotas.users.{self.user}]" if self.user in settings.users else "[quotas.user]"
        # (who is limited, the table that says so, the limits), only those that limit
        self.limits = tuple(
            (holder, table, limits)
            for holder, table, limits in (
                ("project", "[quotas]", settings.project),
                (f"user {self.user}", own, settings.for_user(self.user)),
            )
            if not limits.empty
        )
        self._read: dict[str, tuple[float, Any]] = {}
        # CPU seconds per user of the day's step runs: (since, newest event read, totals)
        self._cpu: tuple[str, int, dict[str, float]] | None = None
        with _LOCK:
            _IN_FLIGHT[state.run_id] = (self.user, 0)

    # -- reading what is in use ----------------------------------------------------------
    def _cached(self, name: str, read: Any) -> Any:
        now = time.monotonic()
        found = self._read.get(name)
        if found is None or now - found[0] > _READ_AGAIN_S:
            found = self._read[name] = (now, read())
        return found[1]

    def _executing(self, holder: str) -> int:
        """Steps executing now, of the project or of this run's user."""
        rows: list[tuple[str, str]] = self._cached(
            "executing", lambda: executing_step_runs(self.state.project.ledger.reader())
        )
        user = None if holder == "project" else self.user
        here, local_runs = _in_process(user)
        elsewhere = sum(
            1
            for run_id, owner in rows
            if run_id not in local_runs and (user is None or user_name(owner) == user)
        )
        return here + elsewhere

    def _cpu_hours(self, holder: str) -> float:
        """CPU-hours the step runs that ended today used, of the project or this user.

        The day is read once; later calls add the step events appended since.
        """
        day = dt.datetime.combine(utcnow().date(), dt.time(), tzinfo=dt.UTC)
        since = format_ts(day)
        reader = self.state.project.ledger.reader()
        if self._cpu is None or self._cpu[0] != since:
            # Both in the caller's transaction, under the write lock: the same state.
            head = newest_seq(reader)
            rows = cpu_seconds_since(reader, since)
            totals: dict[str, float] = {}
        else:
            _, after, totals = self._cpu
            rows, head = cpu_seconds_after(reader, after, since)
        for owner, seconds in rows:
            who = user_name(owner)
            totals[who] = totals.get(who, 0.0) + seconds
        self._cpu = (since, head, totals)
        user = None if holder == "project" else self.user
        used = sum(s for who, s in totals.items() if user is None or who == user)
        return (used + self._queued_cpu(since)) / 3600

    def _queued_cpu(self, since: str) -> float:
        """CPU seconds of the run's own steps that ended but whose end is still queued.

        They are appended in the very transaction the check runs in (after it), so the
        ledger does not hold them yet; the next read finds them there.
        """
        return cpu_seconds_queued(self.state.pending, since)

    def _mine(self) -> int:
        with _LOCK:
            return _IN_FLIGHT.get(self.state.run_id, ("", 0))[1]

    # -- what the scheduler asks -----------------------------------------------------------
    def should_wait(self) -> bool:
        """Whether the run's next step should wait for one of its own steps to end."""
        if self._mine() == 0:
            return False
        return any(
            limits.concurrent_steps is not None
            and self._executing(holder) >= limits.concurrent_steps
            for holder, _, limits in self.limits
        )

    def admit(self, step: str, start: Callable[[Callable[[Any], None]], None]) -> None:
        """Check the quotas and record the step's start in one write transaction.

        ``start`` appends the step's ``step.started`` (and the events queued before it)
        in one ledger transaction, calling the check it is given inside it, under the
        ledger's write lock, before anything is written (the ``precondition`` of
        :meth:`~pipetrail.ledger.ledger.Ledger.append`). The check reads what is in use
        afresh there, so two coordinators cannot both take the last place of a quota: the
        second one's check runs after the first one's start is committed (see
        docs/adr/0030-quota-admission-under-the-ledger-lock.md). Once the check passes,
        the step counts as one of the run's steps executing.

        Raises:
            QuotaWait: a concurrency quota is full and some of its steps are this run's
                (nothing appended: ask again once one has ended).
            QuotaExceededError: a quota is used up (names it, its limit and its use);
                nothing appended.
        """
        counted = False

        def check(_db: Any) -> None:
            nonlocal counted
            self._read.pop("executing", None)  # read afresh, under the lock
            self._check(step)
            with _LOCK:
                who, count = _IN_FLIGHT.get(self.state.run_id, (self.user, 0))
                _IN_FLIGHT[self.state.run_id] = (who, count + 1)
            counted = True

        try:
            start(check)
        except BaseException:
            if counted:  # the check passed but the transaction did not commit
                self.release()
            raise

    def _check(self, step: str) -> None:
        for holder, table, limits in self.limits:
            if limits.concurrent_steps is not None:
                using = self._executing(holder)
                if using >= limits.concurrent_steps:
                    refusal = QuotaWait if self._mine() else QuotaExceededError
                    raise refusal(
                        f"step {step!r} refused: the {holder}'s quota of concurrent steps "
                        f"({limits.concurrent_steps}) is used up ({using} executing now); "
                        f"run again when they have ended, or raise concurrent_steps in {table} "
                        "of pipetrail.toml",
                        run_id=self.state.run_id,
                    )
            if limits.cpu_hours_per_day is not None:
                used = self._cpu_hours(holder)
                if used >= limits.cpu_hours_per_day:
                    raise QuotaExceededError(
                        f"step {step!r} refused: the {holder}'s quota of CPU-hours per day "
                        f"({limits.cpu_hours_per_day:g}) is used up ({used:.4g} CPU-hours "
                        "recorded since 00:00 UTC); run again tomorrow (UTC), or raise "
                        f"cpu_hours_per_day in {table} of pipetrail.toml",
                        run_id=self.state.run_id,
                    )

    def release(self) -> None:
        """One of the run's steps has ended."""
        with _LOCK:
            who, count = _IN_FLIGHT.get(self.state.run_id, (self.user, 1))
            _IN_FLIGHT[self.state.run_id] = (who, max(0, count - 1))

    def close(self) -> None:
        """The run has ended: its steps no longer count."""
        with _LOCK:
            _IN_FLIGHT.pop(self.state.run_id, None)


def run_quotas(state: RunState, table: Any) -> RunQuotas | None:
    """The quotas of ``state``'s run, or None when the project has none.

    ``table``: the project's ``[quotas]`` table, as read by the caller.

    Raises:
        ProjectError: the ``[quotas]`` table is wrong.
    """
    settings = quotas_in(state.project.root, table)
    if settings is None:
        return None
    owner = current_owner()
    if settings.project.empty and settings.for_user(user_name(owner)).empty:
        return None  # only other users are limited: no check, no transaction of its own
    return RunQuotas(state, settings, owner)

"""``pipetrail.Project``: a project's stores, plus reading its record back.

:class:`Project` is the project class the runner uses (:class:`pipetrail.execution.
project.Project`, whose constructor and ``discover``/``at`` it keeps) with the read API
on top: list and open runs, load artifacts, explain cache decisions, diff runs, and add
names, tags and notes to runs. Every query goes through the ledger's read model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.config import load_config
from pipetrail.errors import NotFoundError
from pipetrail.execution.explain import explain_step
from pipetrail.execution.project import Project as _Stores
from pipetrail.ledger.annotations import name_draft, note_draft, tag_draft, untag_draft
from pipetrail.ledger.read_model import RunFilter, find_runs, run_record, run_tags
from pipetrail.ledger.run_query import parse_sort, parse_where
from pipetrail.lineage.diff import diff_runs
from pipetrail.read.results import WhyResult
from pipetrail.read.run import Run
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping, Sequence

    from pipetrail.lineage.diff import RunDiff

__all__ = ["Project"]


def _ref(run: Run | str) -> str:
    return run.id if isinstance(run, Run) else run


class Project(_Stores):
    """A pipetrail project: run pipelines in it, and read its record back.

    Open one with :meth:`open`; pass it to ``pipeline.with_options(project=...)`` to run
    there.
    """

    @classmethod
    def open(cls, path: str | Path = ".") -> Project:
        """Open the project that holds ``path`` (a folder in it, or its root).

        Raises:
            ProjectError: ``path`` is in no pipetrail project, or its ``pipetrail.toml``
                is malformed.
        """
        return cls(load_config(Path(path).resolve(), must_exist=True))

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------
    def runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        since: dt.datetime | str | None = None,
        purpose: str | None = None,
        where: str | Sequence[str] = (),
        sort: str | None = None,
        limit: int | None = 50,
        before: str | None = None,
    ) -> list[Run]:
        """Return the runs that match, newest first (every filter is applied in SQL).

        Args:
            pipeline: only runs of this pipeline.
            status: only runs with this status (``completed``, ``failed``...).
            params: only runs whose recorded parameter values equal these
                (``{"C": 0.5}``; ``1`` and ``1.0`` are equal).
            tags: only runs carrying these tags (``{"stage": "baseline"}``).
            since: only runs started at or after this time (a datetime, or ISO text).
            purpose: only runs started as ``run`` (ordinary), ``reproduce`` or ``check``;
                default: all.
            where: conditions such as ``"metrics.f1 > 0.9 and params.C <= 1"``
                (:mod:`pipetrail.ledger.run_query` lists the fields and operators).
            sort: an order such as ``"metrics.f1 desc"`` (newest first by default).
            limit: at most this many (None: all).
            before: only runs whose id sorts before this run id (the next page after
                a listing that ended with it, in the default order).

        Raises:
            ParamError: a filter names an unknown status, purpose or field, a metric or
                parameter no run records, a malformed tag key or condition, or a time
                that is not one.
        """
        found = find_runs(
            self.reader(),
            RunFilter(
                pipeline=pipeline,
                status=status,
                purpose=purpose,
                params=params,
                tags=tags,
                since=since,
                where=tuple(parse_where(where)) if where else (),
                sort=parse_sort(sort) if sort else None,
                limit=limit,
                before=before,
            ),
        )
        runs = [Run(self, record) for record in found]
        # A run recorded as running whose process died lists as crashed (decided per run).
        return [run for run in runs if status is None or run.status == status]

    def run(self, ref: str = "latest", *, any_purpose: bool = False) -> Run:
        """Open one run: ``latest``, a run id, or a unique prefix of one.

        Args:
            ref: what to open.
            any_purpose: let ``latest`` be a run made by ``reproduce`` or ``check`` too
                (by default it is the newest ordinary run).

        Raises:
            NotFoundError: no run matches.
            AmbiguousPrefixError: several runs match (the message names them).
        """
        reader = self.reader()
        return Run(self, run_record(reader, reader.resolve_run(ref, any_purpose=any_purpose)))

    # -- artifacts -------------------------------------------------------------------
    def load(self, digest: str) -> Any:
        """Return an artifact's value by digest or unique prefix (verified read).

        Raises:
            NotFoundError: no artifact matches.
            AmbiguousPrefixError: several artifacts match.
            IntegrityError: the stored bytes are corrupt (the store quarantined them).
        """
        reader = self.reader()
        full = reader.resolve_artifact(digest)
        record = reader.artifact(full)
        if record is None:
            raise NotFoundError(f"artifact {full} is not recorded in this project")
        stored = StoredArtifact.from_dict(record)
        return self.registry.load(stored, self.store_for(stored))

    # -- explanations ----------------------------------------------------------------
    def why(self, run: Run | str, step: str) -> WhyResult:
        """Explain ``step``'s cache decision in ``run``: each key component, what changed.

        Raises:
            NotFoundError: no such run or step.
            AmbiguousPrefixError: the run prefix or the step name is ambiguous.
        """
        return WhyResult.from_report(explain_step(self.reader(), _ref(run), step))

    def diff(self, a: Run | str, b: Run | str) -> RunDiff:
        """Compare run ``b`` with run ``a`` (params, seeds, steps, metrics, a verdict...).

        Raises:
            NotFoundError: a ref matches no run.
            AmbiguousPrefixError: a ref matches several runs.
        """
        return diff_runs(self, _ref(a), _ref(b))

    # -- names, tags, notes ----------------------------------------------------------
    def tag(self, run: Run | str, **tags: Any) -> dict[str, str]:
        """Set tags on a run (``project.tag(run, stage="baseline")``); return its tags.

        Raises:
            NotFoundError: no such run.
            ParamError: a tag key or value is not valid (nothing is recorded).
        """
        run_id = self.reader().resolve_run(_ref(run))
        self.ledger.append([tag_draft(run_id, tags)])
        return run_tags(self.reader(), [run_id]).get(run_id, {})

    def untag(self, run: Run | str, *keys: str) -> dict[str, str]:
        """Remove tags from a run; return the tags it keeps.

        Raises:
            NotFoundError: no such run.
            ParamError: the run has no such tag (nothing is recorded).
        """
        run_id = self.reader().resolve_run(_ref(run))
        present = run_tags(self.reader(), [run_id]).get(run_id, {})
        self.ledger.append([untag_draft(run_id, list(keys), set(present))])
        return run_tags(self.reader(), [run_id]).get(run_id, {})

    def note(self, run: Run | str, text: str) -> None:
        """Add a note to a run.

        Raises:
            NotFoundError: no such run.
            ParamError: the note is empty or too long (nothing is recorded).
        """
        run_id = self.reader().resolve_run(_ref(run))
        self.ledger.append([note_draft(run_id, text)])

    def rename(self, run: Run | str, name: str) -> str:
        """Give a run a name (replacing any earlier one); return it.

        Raises:
            NotFoundError: no such run.
            ParamError: the name is empty, too long or not one line.
        """
        run_id = self.reader().resolve_run(_ref(run))
        draft = name_draft(run_id, name)
        self.ledger.append([draft])
        return str(draft.payload["name"])

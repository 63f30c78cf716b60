"""Standard exports of a finished run: OpenLineage events, W3C PROV-JSON, in-toto/SLSA.

Owns: turning one run's record into each standard, naming things consistently across
them, and sending OpenLineage events to a collector. Reads the ledger through a
:class:`~pipetrail.ledger.Reader`; never appends, never imports cli. Deterministic:
exporting the same run twice gives the same bytes.

Naming conventions (all formats):

=====================  =====================================================================
thing                  name
=====================  =====================================================================
project namespace      ``pipetrail://<project folder name>`` (``namespace=`` overrides)
pipeline run (job)     ``<pipeline>`` in the project namespace
step run (job)         ``<pipeline>.<node_id>`` in the project namespace
step output (dataset)  ``<pipeline>.<node_id>.<output>`` in the project namespace
source (dataset)       its absolute path in namespace ``file://<host that ran the run>``
other artifact         ``artifacts.blake3:<hex>`` in the project namespace (not made here)
dataset version        the content digest, ``blake3:<hex>``
OpenLineage runId      run / step run id (a ULID) as a UUIDv7 (:func:`run_uuid`)
PROV ids               ``pipetrail:run-<id>``, ``pipetrail:steprun-<id>``,
                       ``pipetrail:blake3-<hex>`` (``pipetrail:`` = ``pipetrail://prov/``)
in-toto subject        ``<pipeline>.<node_id>.<output>``, digest ``{"blake3": <hex>}``
producer               ``https://pypi.org/project/pipetrail/<version>/``
=====================  =====================================================================

Example:
    >>> from pipetrail import Project
    >>> text = render_export(export_run(Project.discover(), "latest", "prov"), "prov")
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError
from pipetrail.lineage.exports.collect import ExportError as ExportError
from pipetrail.lineage.exports.collect import GovernanceRecord as GovernanceRecord
from pipetrail.lineage.exports.collect import RunNotFinishedError as RunNotFinishedError
from pipetrail.lineage.exports.collect import RunSnapshot as RunSnapshot
from pipetrail.lineage.exports.collect import collect_run as collect_run
from pipetrail.lineage.exports.intoto import intoto_statement as intoto_statement
from pipetrail.lineage.exports.openlineage import openlineage_events as openlineage_events
from pipetrail.lineage.exports.openlineage import run_uuid as run_uuid
from pipetrail.lineage.exports.prov import prov_document as prov_document
from pipetrail.lineage.exports.transport import CollectorError as CollectorError
from pipetrail.lineage.exports.transport import OpenLineageHttpEmitter as OpenLineageHttpEmitter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader

__all__ = [
    "FORMATS",
    "CollectorError",
    "ExportError",
    "GovernanceRecord",
    "OpenLineageHttpEmitter",
    "RunNotFinishedError",
    "RunSnapshot",
    "collect_run",
    "export_run",
    "intoto_statement",
    "openlineage_events",
    "prov_document",
    "render_export",
    "run_uuid",
    "send_openlineage",
]

FORMATS = ("openlineage", "prov", "intoto")

Document = list[dict[str, Any]] | dict[str, Any]


def _check_format(format_name: str) -> None:
    if format_name not in FORMATS:
        raise DefinitionError(
            f"unknown export format {format_name!r}; choose one of {', '.join(FORMATS)}"
        )


def export_run(
    project_or_reader: Project | Reader,
    run_ref: str,
    format_name: str,
    *,
    namespace: str | None = None,
    root: Path | None = None,
    governance: Sequence[GovernanceRecord] = (),
) -> Document:
    """Export one finished run in a standard format.

    Args:
        project_or_reader: the project, or a reader over its metadata store.
        run_ref: run id, unique prefix or ``latest``.
        format_name: ``openlineage`` (a list of RunEvents), ``prov`` (a PROV-JSON
            document) or ``intoto`` (an in-toto Statement).
        namespace: the project namespace (default ``pipetrail://<project folder>``).
        root: the project folder, to spell source paths absolutely (default: the
            project's; a bare reader keeps them as recorded).
        governance: the run's verified governance acts, to state in the OpenLineage
            (``pipetrail_governance`` run facet) and PROV exports; verifying them is the
            governance layer's job: pass
            :func:`pipetrail.governance.trail.run_governance`'s result (the CLI does).

    Returns:
        JSON-able data; :func:`render_export` turns it into text.

    Raises:
        NotFoundError: no run matches ``run_ref``.
        RunNotFinishedError: the run is still running.
        ExportError: the run cannot be expressed in this format (in-toto: not completed).
        DefinitionError: unknown format.
    """
    _check_format(format_name)
    snap = collect_run(project_or_reader, run_ref, namespace=namespace, root=root)
    if governance:
        snap = dataclasses.replace(snap, governance=tuple(governance))
    if format_name == "openlineage":
        return openlineage_events(snap)
    if format_name == "prov":
        return prov_document(snap)
    return intoto_statement(snap)


def render_export(document: Document, format_name: str) -> str:
    """Return an export as text.

    OpenLineage becomes JSON Lines (one event per line, as OpenLineage file transports
    write them); PROV and in-toto one indented JSON document.
    """
    _check_format(format_name)
    if format_name == "openlineage" and isinstance(document, list):
        return "".join(json.dumps(event, sort_keys=True) + "\n" for event in document)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def send_openlineage(
    project_or_reader: Project | Reader,
    run_ref: str,
    url: str,
    *,
    api_key: str | None = None,
    timeout: float = 10.0,
    namespace: str | None = None,
    **options: Any,
) -> int:
    """Send a finished run's OpenLineage events to a collector; return how many were sent.

    ``options`` go to :class:`OpenLineageHttpEmitter` (``retries``, ``backoff``,
    ``headers``, ``gzip``).

    Raises:
        CollectorError: the collector is unreachable or refused an event.
        RunNotFinishedError: the run is still running (nothing is sent).
    """
    emitter = OpenLineageHttpEmitter(url, api_key=api_key, timeout=timeout, **options)
    snap = collect_run(project_or_reader, run_ref, namespace=namespace)
    with emitter:
        return emitter.emit_all(openlineage_events(snap))

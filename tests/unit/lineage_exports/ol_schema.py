"""Validate OpenLineage events against the official JSON schemas vendored in tests/schemas.

Every event is validated against OpenLineage.json; every standard facet (one whose
``_schemaURL`` is under https://openlineage.io/) against the facet file it names, and
every custom facet whose schema ships with pipetrail (src/pipetrail/lineage/exports/
schemas) against that one, looked up locally through a ``referencing`` registry (no
network). The facet's key must be the
property that file defines for it. Formats jsonschema cannot check without optional
packages (date-time, uri) are checked here by hand; ``uuid`` by the format checker.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]  # no stubs installed
from referencing import Registry, Resource

# tests/schemas/openlineage: copied from the OpenLineage project (its README says which
# version and under which license); part of the repository, so a fresh clone has them.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "openlineage"
OPENLINEAGE_PREFIX = "https://openlineage.io/"
# pipetrail's own facet schemas, shipped with the package (those that have one).
OWN_SCHEMA_DIR = (
    Path(__file__).resolve().parents[3] / "src" / "pipetrail" / "lineage" / "exports" / "schemas"
)


@functools.cache
def _schemas() -> tuple[Registry, dict[str, Any], dict[str, dict[str, Any]]]:
    main = json.loads((SCHEMA_DIR / "OpenLineage.json").read_text(encoding="utf-8"))
    facets = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((SCHEMA_DIR / "facets").glob("*.json"))
    ]
    facets += [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(OWN_SCHEMA_DIR.glob("*.json"))
    ]
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in [main, *facets]
    )
    return registry, main, {schema["$id"]: schema for schema in facets}


def _check_time(value: str) -> None:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"event time without a time zone: {value}"


def _check_uri(value: str) -> None:
    parts = urlsplit(value)
    assert parts.scheme, f"not a URI: {value!r}"
    assert parts.netloc or parts.path, f"not a URI: {value!r}"


def _facet_containers(event: dict[str, Any]) -> list[dict[str, Any]]:
    found = [event["run"].get("facets") or {}, event["job"].get("facets") or {}]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        found.append(dataset.get("facets") or {})
        found.append(dataset.get("inputFacets") or {})
        found.append(dataset.get("outputFacets") or {})
    return found


def validate_event(event: dict[str, Any]) -> list[str]:
    """Validate one event; return the standard facet schema URLs it used."""
    registry, main, facet_schemas = _schemas()
    checker = FormatChecker()
    Draft202012Validator(main, registry=registry, format_checker=checker).validate(event)
    _check_time(event["eventTime"])
    _check_uri(event["producer"])
    _check_uri(event["schemaURL"])
    used = []
    for container in _facet_containers(event):
        for key, facet in container.items():
            url = facet["_schemaURL"]
            _check_uri(url)
            _check_uri(facet["_producer"])
            document_id, _, pointer = url.partition("#")
            if not url.startswith(OPENLINEAGE_PREFIX):
                assert key.startswith("pipetrail_"), f"custom facet {key!r} lacks our prefix"
                if document_id not in facet_schemas:
                    continue  # a custom facet without a shipped schema (yet)
            assert document_id in facet_schemas, f"no local schema for facet {key!r}: {url}"
            root = facet_schemas[document_id]
            assert key in root["properties"], f"{document_id} defines no facet named {key!r}"
            assert root["properties"][key]["$ref"] == "#" + pointer, url
            validator = Draft202012Validator(root, registry=registry, format_checker=checker)
            validator.validate({key: facet})
            used.append(url)
    return used

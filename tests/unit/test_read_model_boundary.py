"""One read model: only the ledger writes SQL, runs queries and reads event payloads.

Scans every module of src/pipetrail outside src/pipetrail/ledger for SQL text in string
literals, calls of ``.fetch(`` (the ledger reader's raw query method), and event payloads
(a ``.payload`` attribute or a ``["payload"]`` key). The local caches keep their own
SQLite files, unrelated to the ledger, and are allowed by name.
"""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pipetrail"

# Own SQLite databases that are caches or stores, not the metadata ledger.
LOCAL_DATABASES = (
    "hashing/code_cache.py",  # code fingerprint cache
    "capture/statcache.py",  # file stat cache
    "store/pack*.py",  # packed object store
    "store/gc.py",  # the packed object store's collection (pack rows, segments)
    "capture/s3_source.py",  # the cache of S3 source objects' digests by ETag
)
# (module, what): a use that is not an event read back from the ledger.
ALLOWED = {
    # A DSSE envelope's own payload (the envelope's field), not a ledger event.
    ("governance/dsse.py", ".payload"),
    ("governance/dsse.py", '["payload"]'),
    # The name a ``run.named`` draft is about to append, as normalised by the draft.
    ("read/project.py", ".payload"),
    # A ``run.started`` draft trimmed before it is appended for a run whose store failed.
    ("execution/store_failure.py", ".payload"),
    # Artifact drafts queued for the next append, checked against the ledger in one query.
    ("execution/flushing.py", ".payload"),
    # The run's step drafts still queued when it completes, read with its appended step
    # runs to compare their resource use with the history.
    ("execution/resource_profile.py", ".payload"),
    # An in-toto statement inside a DSSE envelope, not a ledger event.
    ("verify/attestation.py", ".payload"),
    # The events of an audit bundle, read from the bundle file offline (no ledger), and
    # the bundle manifest's DSSE envelope.
    ("governance/bundle_check.py", ".payload"),
    ("governance/bundle_check.py", '["payload"]'),
    ("governance/bundle_data_check.py", '["payload"]'),
}
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|WITH\s+RECURSIVE)\b"
)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings or other bare expressions."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def violations(source: str) -> list[tuple[int, str]]:
    """Return ``(line, what)`` for each read-model rule the module source breaks."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if SQL.search(node.value):
                found.append((node.lineno, "SQL"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "fetch":
                found.append((node.lineno, ".fetch("))
        elif isinstance(node, ast.Attribute) and node.attr == "payload":
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append((node.lineno, ".payload"))
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and node.slice.value == "payload"
        ):
            found.append((node.lineno, '["payload"]'))
    return found


def _outside_ledger() -> list[Path]:
    files = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("ledger/") or any(fnmatch(relative, p) for p in LOCAL_DATABASES):
            continue
        files.append(path)
    return files


def test_no_module_outside_the_ledger_queries_or_parses_events() -> None:
    broken = []
    for path in _outside_ledger():
        relative = path.relative_to(SRC).as_posix()
        for line, what in violations(path.read_text(encoding="utf-8")):
            if (relative, what) not in ALLOWED:
                broken.append(f"src/pipetrail/{relative}:{line}: {what}")
    assert not broken, (
        "outside src/pipetrail/ledger, read runs through the ledger's typed read model "
        "(ledger/read_model.py, event_records.py, event_reads.py, lineage_reads.py, "
        "governance_reads.py):\n" + "\n".join(broken)
    )


def test_the_scan_covers_the_tree() -> None:
    scanned = {p.relative_to(SRC).as_posix() for p in _outside_ledger()}
    assert {"lineage/queries.py", "lineage/refs.py", "cli/main.py"} <= scanned
    assert {"governance/state.py", "governance/service.py", "governance/views.py"} <= scanned
    assert not any(name.startswith("ledger/") for name in scanned)
    assert "store/pack.py" not in scanned


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ('rows = reader.fetch("SELECT a FROM runs WHERE b = :b", {})', ".fetch("),
        ("Q = \"SELECT digest FROM artifacts WHERE role = 'code'\"", "SQL"),
        ('Q = f"WITH RECURSIVE walk(x) AS ({seed})"', "SQL"),
        ("Q = 'UPDATE runs SET status = :s'", "SQL"),
        ('metrics = event.payload.get("metrics")', ".payload"),
        ('blob = json.loads(row["payload"])["blob"]', '["payload"]'),
    ],
)
def test_the_scan_finds_each_kind_of_use(source: str, what: str) -> None:
    assert what in [w for _, w in violations(source)]


def test_the_scan_ignores_prose_and_own_attributes() -> None:
    source = (
        'def f(self):\n    """Select the runs from the ledger (SELECT x FROM y in SQL)."""\n'
        "    return self.payload\n"
        'label = "selected from the list"\n'
    )
    assert violations(source) == []

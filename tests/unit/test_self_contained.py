"""The repository stands on its own: tests, benchmarks and scripts read nothing outside it.

A fresh clone on a user's machine has only the repository. A file that reaches above its
root (``Path(__file__).parents[N]`` past the top, ``../`` runs past the top), into a home
folder or into a fixed absolute location of one machine passes here and fails (or
quietly skips) there. This is a plain text scan of the files that run: simple on purpose,
with no exceptions list; a line it flags is rewritten to stay inside the repository.

The vendored OpenLineage schemas are checked against their README's version table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tests", "benchmarks", "scripts", "examples", ".ci")
SUFFIXES = {".py", ".sh", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".txt", ""}
SKIPPED_PARTS = {"__pycache__", ".work", ".pipetrail", ".venv", ".hypothesis"}
OL_DIR = ROOT / "tests" / "schemas" / "openlineage"

_PARENTS = re.compile(r"\.parents\[(\d+)\]")
_PARENT = re.compile(r"\.parent\b(?!s)")
_UP_RUN = re.compile(r"(?<![\w.])((?:\.\./)+)")
_HOME = re.compile(
    "|".join(
        [
            r"Path\.home\(",
            r"expanduser\(",
            r"""["']~/""",
            r"\$\{?HOME\b",
            r"""environ\[["']HOME["']\]""",
            r"""environ\.get\(["']HOME["']""",
            r"""getenv\(["']HOME["']""",
        ]
    )
)
_MACHINE = re.compile(r"/(?:work|home|Users|root)/")


def _files() -> list[Path]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if not path.is_file() or SKIPPED_PARTS.intersection(rel.parts[:-1]):
                continue
            # This file holds the patterns (and examples of them) itself.
            if path.suffix in SUFFIXES and "schemas" not in rel.parts and path != Path(__file__):
                found.append(path)
    return found


def outside_references(rel: Path, text: str) -> list[str]:
    """Lines of ``text`` (the file at ``rel``, relative to the root) that leave the root."""
    depth = len(rel.parts) - 1  # folders between the root and the file
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{rel}:{number}: {line.strip()}"
        if "__file__" in line:
            # Levels above the file's folder: parents[N] is N, .parent x C is C - 1.
            ups = [int(n) for n in _PARENTS.findall(line)]
            if not ups and _PARENT.search(line):
                ups = [len(_PARENT.findall(line)) - 1]
            if any(up > depth for up in ups):
                problems.append(f"{where}  (goes above the repository root)")
        for run in _UP_RUN.findall(line):
            if run.count("../") > depth:
                problems.append(f"{where}  (a ../ path above the repository root)")
        if _HOME.search(line):
            problems.append(f"{where}  (reads a home folder)")
        if _MACHINE.search(line):
            problems.append(f"{where}  (a fixed absolute path of one machine)")
    return problems


def test_the_scan_catches_what_it_is_for() -> None:
    bad = {
        "tests/unit/x/a.py": "D = Path(__file__).resolve().parents[4] / 'beside'",
        "tests/b.py": "D = Path(__file__).parent.parent.parent / 'x'",
        "benchmarks/c.py": "open('../../beside/schemas/x.json')",
        "scripts/d.sh": 'cat "$HOME/.config/x"',
        "tests/e.py": "Path.home() / '.cache'",
        "tests/f.py": "SCHEMAS = '/work/beside/schemas'",
    }
    for rel, line in bad.items():
        assert outside_references(Path(rel), line), rel
    good = {
        "tests/unit/x/a.py": "D = Path(__file__).resolve().parents[3] / 'examples'",
        "tests/b.py": "D = Path(__file__).parent.parent / 'x'",
        "tests/unit/c.py": "observe(root, 'data/../../outside.csv')",
        "tests/d.py": 'monkeypatch.setenv("HOME", str(tmp_path))',
        "scripts/e.sh": 'root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"',
    }
    for rel, line in good.items():
        assert not outside_references(Path(rel), line), rel


def test_no_test_benchmark_or_script_reads_outside_the_repository() -> None:
    files = _files()
    assert len(files) > 50, "the scan found too few files: is ROOT right?"
    problems = [
        problem
        for path in files
        for problem in outside_references(
            path.relative_to(ROOT), path.read_text(encoding="utf-8", errors="replace")
        )
    ]
    assert not problems, "files reading outside the repository:\n" + "\n".join(problems)


def _version_table() -> dict[str, str]:
    text = (OL_DIR / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `([\w/.]+\.json)` \| ([\d-]+) \|$", text, flags=re.MULTILINE))


def test_the_vendored_openlineage_schemas_match_their_readme() -> None:
    assert (OL_DIR / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    table = _version_table()
    files = sorted(p.relative_to(OL_DIR).as_posix() for p in OL_DIR.rglob("*.json"))
    assert sorted(table) == files
    for name, version in table.items():
        schema_id = json.loads((OL_DIR / name).read_text(encoding="utf-8"))["$id"]
        assert f"/{version}/" in schema_id, f"{name}: README says {version}, $id is {schema_id}"


@pytest.mark.parametrize("name", ["OpenLineage.json", "facets/ParentRunFacet.json"])
def test_the_schemas_the_export_tests_use_are_the_vendored_ones(name: str) -> None:
    from tests.unit.lineage_exports.ol_schema import SCHEMA_DIR

    assert SCHEMA_DIR.resolve() == OL_DIR
    assert (SCHEMA_DIR / name).is_file()

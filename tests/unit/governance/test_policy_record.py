"""The record that spares validating an unchanged ``[promotion]`` table with pydantic.

A record is used only when made from the same file bytes, project folder, pipetrail and
validating code; a corrupt, edited or stale one is validated again, never trusted; an
invalid table is never recorded, so it is refused every time; nothing is written outside
a ``.pipetrail`` folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipetrail.config_record
import pipetrail.governance.policy
import pipetrail.governance.policy_model
from pipetrail.errors import ProjectError
from pipetrail.governance.policy import RECORD_PATH, AliasPolicy, load_policies, parse_policies

SRC = str(Path(pipetrail.governance.policy.__file__).resolve().parents[2])
TOML = (
    "[pipetrail]\nseed = 1\n\n[promotion.production]\napprovals = 2\n"
    'metrics = ["roc_auc >= 0.95"]\nchecks = ["gate", "parity"]\nparity_reference = "01ABC"\n'
    '\n[promotion.staging]\nrollback = "request"\n'
)
PRODUCTION = {
    "approvals": 2,
    "approver_roles": ["approver", "admin"],
    "checks": ["gate", "parity"],
    "metrics": ["roc_auc >= 0.95"],
    "parity_reference": "01ABC",
    "rollback": "approver",
}


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each validation with pydantic, recorded (the table validated)."""
    seen: list[Any] = []
    validate = pipetrail.governance.policy_model.validate_policies

    def counted(section: Any, origin: str) -> dict[str, dict[str, Any]]:
        seen.append(section)
        return validate(section, origin)

    monkeypatch.setattr(pipetrail.governance.policy_model, "validate_policies", counted)
    monkeypatch.setattr(pipetrail.governance.policy, "_MEMO", {})
    return seen


def _project(tmp_path: Path, text: str = TOML) -> Path:
    (tmp_path / ".pipetrail").mkdir(parents=True)
    (tmp_path / "pipetrail.toml").write_text(text)
    return tmp_path


def _load(root: Path) -> dict[str, AliasPolicy]:
    pipetrail.governance.policy._MEMO.clear()  # type: ignore[attr-defined]
    return load_policies(root)


def test_an_unchanged_file_is_validated_once(tmp_path: Path, validations: list[Any]) -> None:
    root = _project(tmp_path)
    first = _load(root)
    again = _load(root)
    assert len(validations) == 1
    assert first == again
    assert again["production"].frozen() == PRODUCTION
    assert again["production"].approver_roles == ("approver", "admin")
    assert [str(t) for t in again["production"].thresholds] == ["roc_auc >= 0.95"]
    assert again["staging"] == AliasPolicy(rollback="request")
    assert again == parse_policies({"promotion": json.loads(json.dumps(validations[0]))})
    assert (root / RECORD_PATH).is_file()


def test_the_defaults_are_what_validating_an_empty_table_gives() -> None:
    assert parse_policies({"promotion": {"any": {}}})["any"] == AliasPolicy()


def test_a_changed_file_is_validated_again_and_an_invalid_one_refused_every_time(
    tmp_path: Path, validations: list[Any]
) -> None:
    root = _project(tmp_path)
    _load(root)
    toml = root / "pipetrail.toml"
    toml.write_text(TOML.replace("approvals = 2", "approvals = 3"))
    assert _load(root)["production"].approvals == 3
    assert len(validations) == 2
    recorded = (root / RECORD_PATH).read_bytes()
    toml.write_text(TOML.replace('"gate", ', '"gate", "vibes", '))
    for _ in range(2):
        with pytest.raises(ProjectError) as caught:
            load_policies(root)  # memoized or not, an invalid table is refused
        assert str(caught.value) == (
            f"{toml}: the promotion policy of alias 'production' is invalid: checks: 'vibes' "
            "is not a check; the checks are: gate, reproduced, contracts, no_leakage, parity "
            "(metric thresholds go under 'metrics')"
        )
    assert len(validations) == 4
    assert (root / RECORD_PATH).read_bytes() == recorded  # only a success is recorded


def test_a_file_without_promotion_needs_no_validation_and_no_record(
    tmp_path: Path, validations: list[Any]
) -> None:
    root = _project(tmp_path, "[pipetrail]\nseed = 1\n")
    assert _load(root) == {}
    assert _load(tmp_path / "elsewhere") == {}
    assert validations == []
    assert not (root / RECORD_PATH).exists()


def test_a_table_named_only_in_a_comment_is_no_policy(
    tmp_path: Path, validations: list[Any]
) -> None:
    root = _project(tmp_path, "# [promotion] comes later\n[pipetrail]\n")
    assert _load(root) == {}
    assert _load(root) == {}
    assert len(validations) == 0  # parsed: no table, nothing to validate
    (root / "pipetrail.toml").write_text("[promotion.production\n")
    with pytest.raises(ProjectError, match="is not valid TOML"):
        _load(root)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace('"approvals":2', '"approvals":1'),  # edited, checksum kept
        lambda text: "not json",
        lambda text: json.dumps({**json.loads(text), "checksum": "0" * 64}),
        lambda text: _resealed(text, lambda data: data["key"].update(pipetrail="0.0.1")),
        lambda text: _resealed(text, lambda data: data["key"].update(schema="0" * 64)),
        lambda text: _resealed(text, lambda data: data["key"].update(file="0" * 64)),
        lambda text: _resealed(text, lambda data: data["key"].update(format=0)),
        lambda text: _resealed(text, lambda data: data.update(values=[])),
        lambda text: _resealed(text, lambda data: data["values"].update(staging=None)),
        lambda text: _resealed(text, lambda data: _policy(data).update(approvals=0)),
        lambda text: _resealed(text, lambda data: _policy(data).update(approvals=True)),
        lambda text: _resealed(text, lambda data: _policy(data).update(approvals=2.0)),
        lambda text: _resealed(text, lambda data: _policy(data).update(approver_roles=[])),
        lambda text: _resealed(text, lambda data: _policy(data).update(approver_roles=["viewer"])),
        lambda text: _resealed(text, lambda data: _policy(data).update(checks=["vibes"])),
        lambda text: _resealed(text, lambda data: _policy(data).update(metrics=["auc ~ 1"])),
        lambda text: _resealed(text, lambda data: _policy(data).update(metrics="auc > 0")),
        lambda text: _resealed(text, lambda data: _policy(data).update(parity_reference=None)),
        lambda text: _resealed(text, lambda data: _policy(data).update(parity_reference=7)),
        lambda text: _resealed(text, lambda data: _policy(data).update(rollback="anyone")),
        lambda text: _resealed(text, lambda data: _policy(data).update(colour="red")),
        lambda text: _resealed(text, lambda data: _policy(data).pop("rollback")),
    ],
)
def test_a_damaged_or_stale_record_is_validated_again_not_trusted(
    tmp_path: Path, validations: list[Any], damage: Any
) -> None:
    root = _project(tmp_path)
    _load(root)
    record = root / RECORD_PATH
    record.write_text(damage(record.read_text()))
    policies = _load(root)
    assert policies["production"].frozen() == PRODUCTION
    assert len(validations) == 2
    _load(root)
    assert len(validations) == 2  # the rebuilt record serves


def _policy(data: dict[str, Any]) -> dict[str, Any]:
    production: dict[str, Any] = data["values"]["production"]
    return production


def _resealed(text: str, change: Any) -> str:
    """The record changed and given a matching checksum (an edit made with care)."""
    data = json.loads(text)
    del data["checksum"]
    change(data)
    checksum = pipetrail.config_record._digest(pipetrail.config_record._canonical(data))  # type: ignore[attr-defined]
    return json.dumps({**data, "checksum": checksum})


def test_an_edit_of_the_validating_code_invalidates_the_record(
    tmp_path: Path, validations: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = pipetrail.governance.policy._SOURCES  # type: ignore[attr-defined]
    assert {path.name for path in sources} == {"policy.py", "policy_model.py", "roles.py"}
    assert Path(pipetrail.governance.policy_model.__file__) in sources
    copies = tmp_path / "code"
    copies.mkdir()
    for path in sources:
        shutil.copy(path, copies / path.name)
    monkeypatch.setattr(
        pipetrail.governance.policy, "_SOURCES", tuple(copies / path.name for path in sources)
    )
    root = _project(tmp_path / "project")
    _load(root)
    _load(root)
    assert len(validations) == 1
    for name in ("policy_model.py", "roles.py"):
        with (copies / name).open("a") as out:
            out.write("\n# edited\n")
        _load(root)
    assert len(validations) == 3
    (copies / "policy.py").unlink()  # unreadable code: no record is trusted
    _load(root)
    _load(root)
    assert len(validations) == 5


def test_the_record_belongs_to_its_project_folder(tmp_path: Path, validations: list[Any]) -> None:
    one = _project(tmp_path / "one")
    two = _project(tmp_path / "two")
    _load(one)
    (two / RECORD_PATH).parent.mkdir(parents=True)
    (two / RECORD_PATH).write_bytes((one / RECORD_PATH).read_bytes())  # copied along
    _load(two)
    assert len(validations) == 2


def test_no_record_is_written_outside_a_state_folder(
    tmp_path: Path, validations: list[Any]
) -> None:
    (tmp_path / "pipetrail.toml").write_text(TOML)
    assert _load(tmp_path)["production"].approvals == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipetrail.toml"]


_LOAD = """
import sys
from pathlib import Path
from pipetrail.governance.policy import load_policies
try:
    print(load_policies(Path(sys.argv[1]))["production"].approvals)
except Exception as exc:
    print(exc)
print("pydantic" in sys.modules)
"""


def test_an_unchanged_table_is_read_without_importing_pydantic(tmp_path: Path) -> None:
    root = _project(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}

    def load() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD, str(root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.splitlines()

    assert load() == ["2", "True"]  # validated, recorded
    assert load() == ["2", "False"]
    (root / "pipetrail.toml").write_text(TOML.replace("approvals = 2", "approvals = 0"))
    refused = (
        f"{root / 'pipetrail.toml'}: the promotion policy of alias 'production' is invalid: "
        "approvals: Input should be greater than or equal to 1"
    )
    assert load() == [refused, "True"]
    assert load() == [refused, "True"]

"""``pipetrail.toml`` validated by its schema, and the record that spares validating it again.

A record is used only when made from the same file bytes, checked variables, project
folder and pipetrail; a corrupt, edited or stale one is rebuilt; concurrent writers
leave one whole record; nothing is written outside a ``.pipetrail`` folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pipetrail.config_model
import pipetrail.config_record
from pipetrail.config import init_project, load_config
from pipetrail.config_record import RECORD_PATH
from pipetrail.errors import ProjectError
from pipetrail.verify.settings import ReproduceSettings, Tolerance

SRC = str(Path(pipetrail.config_record.__file__).resolve().parents[1])
TOML = '[pipetrail]\nseed = 3\nparity = "warn"\n[reproduce]\ntolerances = { "a.b" = 0.5 }\n'


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Each validation with pydantic, recorded (the text validated); no memo across loads."""
    seen: list[str | None] = []
    validate = pipetrail.config_model.validate_settings

    def counted(path: Path, text: str | None, environ: Any) -> dict[str, Any]:
        seen.append(text)
        return validate(path, text, environ)

    monkeypatch.setattr(pipetrail.config_model, "validate_settings", counted)
    monkeypatch.setattr(pipetrail.config_record, "_MEMO", {})
    for name in ("PIPETRAIL_SEED", "PIPETRAIL_PARITY", "PIPETRAIL_METADATA"):
        monkeypatch.delenv(name, raising=False)
    return seen


def _project(tmp_path: Path, text: str = TOML) -> Path:
    (tmp_path / ".pipetrail").mkdir(parents=True)
    (tmp_path / "pipetrail.toml").write_text(text)
    return tmp_path


def _load(root: Path) -> Any:
    pipetrail.config_record._MEMO.clear()  # type: ignore[attr-defined]
    return load_config(root=root)


def test_an_unchanged_file_is_validated_once(tmp_path: Path, validations: list[str]) -> None:
    root = _project(tmp_path)
    first = _load(root)
    again = _load(root)
    assert validations == [TOML]
    assert first == again
    assert (again.seed, again.parity) == (3, "warn")
    settings = ReproduceSettings.from_config(again)
    assert settings.for_metric("a.b") == Tolerance(abs=0.5)
    assert settings.require_identical_artifacts
    assert (root / RECORD_PATH).is_file()


def test_a_changed_file_or_variable_is_validated_again(
    tmp_path: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    _load(root)
    (root / "pipetrail.toml").write_text(TOML.replace("seed = 3", "seed = 4"))
    assert _load(root).seed == 4
    monkeypatch.setenv("PIPETRAIL_SEED", "9")
    assert _load(root).seed == 9
    assert len(validations) == 3
    (root / "pipetrail.toml").write_text(TOML.replace("seed = 3", "seed = -4"))
    with pytest.raises(ProjectError, match=r"'pipetrail\.seed' must be a whole number"):
        _load(root)


def test_free_form_variables_apply_without_validation_and_are_not_written(
    tmp_path: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    _load(root)
    secret = "postgresql://me:s3cret@db.example/lineage"  # noqa: S105 - a test value
    monkeypatch.setenv("PIPETRAIL_METADATA", secret)
    assert _load(root).metadata_url == secret
    assert len(validations) == 1
    assert "s3cret" not in (root / RECORD_PATH).read_text()


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: text.replace('"seed":3', '"seed":7'),  # edited, checksum kept
        lambda text: "not json",
        lambda text: json.dumps({**json.loads(text), "checksum": "0" * 64}),
        lambda text: _resealed(text, lambda data: data["key"].update(pipetrail="0.0.1")),
        lambda text: _resealed(text, lambda data: data["key"].update(schema="0" * 64)),
        lambda text: _resealed(text, lambda data: data["values"].update(seed=True)),
        lambda text: _resealed(text, lambda data: data["values"].update(parity="maybe")),
    ],
)
def test_a_damaged_or_stale_record_is_rebuilt_not_trusted(
    tmp_path: Path, validations: list[str], damage: Any
) -> None:
    root = _project(tmp_path)
    _load(root)
    record = root / RECORD_PATH
    record.write_text(damage(record.read_text()))
    config = _load(root)
    assert (config.seed, config.parity) == (3, "warn")
    assert len(validations) == 2
    _load(root)
    assert len(validations) == 2  # the rebuilt record serves


def _resealed(text: str, change: Any) -> str:
    """The record changed and given a matching checksum (an edit made with care)."""
    data = json.loads(text)
    del data["checksum"]
    change(data)
    checksum = pipetrail.config_record._digest(pipetrail.config_record._canonical(data))  # type: ignore[attr-defined]
    return json.dumps({**data, "checksum": checksum})


def test_the_record_belongs_to_its_project_folder(tmp_path: Path, validations: list[str]) -> None:
    one = _project(tmp_path / "one")
    two = tmp_path / "two"
    two.mkdir()
    _load(one)
    (two / ".pipetrail" / "cache").mkdir(parents=True)
    (two / "pipetrail.toml").write_text(TOML)
    (two / RECORD_PATH).write_bytes((one / RECORD_PATH).read_bytes())  # copied along
    assert _load(two).root == two.resolve()
    assert len(validations) == 2


def test_no_record_is_written_outside_a_state_folder(
    tmp_path: Path, validations: list[str]
) -> None:
    (tmp_path / "pipetrail.toml").write_text(TOML)
    assert _load(tmp_path).seed == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipetrail.toml"]


def test_defaults_need_no_validation(tmp_path: Path, validations: list[str]) -> None:
    (tmp_path / ".pipetrail").mkdir()
    config = _load(tmp_path)
    assert (config.seed, config.parity, config.has_file) == (0, "off", False)
    assert ReproduceSettings.from_config(config) == ReproduceSettings()
    assert validations == []
    assert not (tmp_path / RECORD_PATH).exists()


_PIPETRAIL_KEYS = "metadata, artifacts, store, seed, executor, parity, parity_reference, gc_grace"
_TOLERANCE = "a number or {abs = ..., rel = ...}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[pipetrail]\nseed = 1.5\n",
            "'pipetrail.seed' must be a whole number from 0 to 4294967295, got 1.5",
        ),
        (
            "[pipetrail]\nmetadata = 3\n",
            "'pipetrail.metadata' must be a SQLAlchemy URL in quotes "
            '(e.g. "sqlite:///.pipetrail/ledger.db"), got 3',
        ),
        (
            '[pipetrail]\nexecutor = "ray"\n',
            '\'pipetrail.executor\' must be "inline", "processes", "dask" or '
            '"dask=tcp://HOST:PORT" (the dask scheduler), '
            "got 'ray'",
        ),
        (
            "[pipetrail]\nseeds = 1\n",
            f"unknown key 'pipetrail.seeds'; the known keys of [pipetrail] are {_PIPETRAIL_KEYS}",
        ),
        ("pipetrail = 3\n", "'pipetrail' must be a table ([pipetrail]), got 3"),
        (
            '[reproduce.tolerances]\n"m.f1" = { rel = -0.1 }\n',
            "'reproduce.tolerances.\"m.f1\".rel' must be a finite number >= 0, got -0.1",
        ),
        (
            '[reproduce]\ntolerances = { "m.f1" = "x" }\n',
            f"'reproduce.tolerances.\"m.f1\"' must be {_TOLERANCE}, got 'x'",
        ),
        (
            "[reproduce]\ntolerance = nan\n",
            "'reproduce.tolerance.abs' must be a finite number >= 0, got nan",
        ),
    ],
)
def test_a_wrong_value_is_one_line_naming_file_key_expectation_and_value(
    tmp_path: Path, validations: list[str], text: str, message: str
) -> None:
    root = _project(tmp_path, text)
    with pytest.raises(ProjectError) as caught:
        _load(root)
    assert str(caught.value) == f"{root / 'pipetrail.toml'}: {message}; fix the file"
    assert not (root / RECORD_PATH).exists()  # only a successful validation is recorded


def test_an_invalid_variable_names_the_variable(
    tmp_path: Path, validations: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    monkeypatch.setenv("PIPETRAIL_PARITY", "loud")
    with pytest.raises(ProjectError) as caught:
        _load(root)
    assert (
        str(caught.value) == "PIPETRAIL_PARITY must be one of 'off', 'warn', 'strict', got 'loud'"
    )


_WRITER = """
import os, sys
from pathlib import Path
from pipetrail.config import init_project, load_config
root = Path(sys.argv[1])
for i in range(40):
    os.environ["PIPETRAIL_SEED"] = str(int(sys.argv[2]) * 100 + i)
    import pipetrail.config_record as r
    r._MEMO.clear()
    assert load_config(root=root).seed == int(sys.argv[2]) * 100 + i
"""


def test_concurrent_writers_leave_one_whole_record(tmp_path: Path, validations: list[str]) -> None:
    root = _project(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(n)], env=env)
        for n in range(4)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    record = json.loads((root / RECORD_PATH).read_text())
    assert record["values"]["seed"] == int(record["key"]["env"]["PIPETRAIL_SEED"])
    assert pipetrail.config_record._read(root / RECORD_PATH, record["key"]) is not None  # type: ignore[attr-defined]
    assert [p.name for p in (root / RECORD_PATH).parent.iterdir()] == ["config.json"]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIPETRAIL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipetrail.cli.main", *args],
        cwd=root,
        env={**env, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _imports_pydantic(done: subprocess.CompletedProcess[str]) -> bool:
    """Whether ``-X importtime`` reports an import of pydantic or one of its modules."""
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    return any(name == "pydantic" or name.startswith("pydantic.") for name in names)


def test_runs_on_an_unchanged_project_does_not_import_pydantic(tmp_path: Path) -> None:
    root = tmp_path
    assert _cli(root, "init").returncode == 0  # validates the new file, records it
    (root / "pipetrail.toml").write_text(TOML)
    first = _cli(root, "runs", "--json")
    assert first.returncode == 0, first.stderr
    assert _imports_pydantic(first)  # the file changed: validated, the record replaced
    again = _cli(root, "runs", "--json")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "[]"
    assert not _imports_pydantic(again)
    (root / "pipetrail.toml").write_text(TOML.replace('"warn"', '"sometimes"'))
    broken = _cli(root, "runs", "--json")
    assert broken.returncode == 2
    assert _imports_pydantic(broken)
    errors = [line for line in broken.stderr.splitlines() if not line.startswith("import time")]
    assert errors == [
        f"error: {root / 'pipetrail.toml'}: 'pipetrail.parity' must be one of 'off', 'warn', "
        "'strict', got 'sometimes'; fix the file"
    ]


def test_a_read_only_command_creates_no_record(tmp_path: Path) -> None:
    root = _project(tmp_path)
    done = _cli(root, "runs", "--json")
    assert done.returncode == 0, done.stderr
    assert _imports_pydantic(done)
    assert sorted(p.name for p in (root / ".pipetrail").iterdir()) == []


def test_a_governance_act_records_the_validation_a_listing_then_uses(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    identity = {"PIPETRAIL_USER": "alice", "PIPETRAIL_HOME": str(tmp_path / "home")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PIPETRAIL_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "pipetrail.cli.main", *args],
            cwd=root,
            env={**env, **identity, "PYTHONPATH": SRC},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert cli("init").returncode == 0
    (root / "one.py").write_text(
        "from pipetrail import pipeline, step\n\n@step\ndef one() -> int:\n    return 1\n\n"
        "@pipeline\ndef single():\n    return one()\n"
    )
    assert cli("run", "one.py", "-q").returncode == 0
    record = root / RECORD_PATH
    record.unlink()  # a project whose record is gone (a cleaned cache, a copied folder)
    listing = cli("model", "list")
    assert listing.returncode == 0, listing.stderr
    assert _imports_pydantic(listing)
    assert not record.exists()  # a listing creates no file
    act = cli("decision", "add", "--about", "latest", "--kind", "split", "80/20")
    assert act.returncode == 0, act.stderr
    assert record.is_file()  # an act records events: it records the validation too
    again = cli("model", "list")
    assert again.returncode == 0, again.stderr
    assert not _imports_pydantic(again)


def test_store_settings_are_validated_and_the_secret_is_never_recorded(tmp_path: Path) -> None:
    root = tmp_path / "p"
    init_project(root)
    (root / "pipetrail.toml").write_text(
        '[pipetrail]\nstore = "s3://bucket/team"\ngc_grace = "30m"\n'
        '[store.s3]\nendpoint = "http://127.0.0.1:9"\nsecret_access_key = "hunter2"\n'
        'cache_size = "1GiB"\n'
    )
    config = load_config(root=root)
    assert config.store_url == "s3://bucket/team"
    assert config.gc_grace == 1800.0
    assert config.store_s3 == {
        "endpoint": "http://127.0.0.1:9",
        "cache_size": "1GiB",
        "secret_access_key": "hunter2",
    }
    record = (root / ".pipetrail" / "cache" / "config.json").read_text()
    assert "hunter2" not in record
    assert load_config(root=root).store_s3["secret_access_key"] == "hunter2"  # noqa: S105
    for bad, message in [
        ('[pipetrail]\nstore = "/data/objects"\n', "'pipetrail.store' must be an S3 store URL"),
        ("[store.s3]\nbucket = 1\n", "unknown key 'store.s3.bucket'"),
        ("[store.s3]\nregion = 3\n", "'store.s3.region' must be a region name"),
    ]:
        (root / "pipetrail.toml").write_text(bad)
        with pytest.raises(ProjectError, match=re.escape(message)):
            load_config(root=root)

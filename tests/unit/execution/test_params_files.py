"""Params files: parsing YAML, TOML and JSON, errors naming file and line, layering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
import pytest

from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.step import step
from pipetrail.errors import ParamError, ParamsFileError
from pipetrail.execution.params_files import (
    load_params,
    load_params_file,
    params_file_records,
    resolve_run_params,
)
from pipetrail.hashing import digest_bytes
from pipetrail.store.memory import MemoryStore

if TYPE_CHECKING:
    from pathlib import Path


class ModelConfig(pydantic.BaseModel):
    C: float = 1.0


class TrainConfig(pydantic.BaseModel):
    epochs: int = 3
    model: ModelConfig = ModelConfig()


@step
def fit(epochs: int, C: float) -> float:
    return epochs * C


def train(cfg: TrainConfig) -> Any:
    return fit(cfg.epochs, cfg.model.C)


def plain(epochs: int = 1, C: float = 1.0) -> Any:
    return fit(epochs, C)


TRAIN = PipelineDefinition(train)
PLAIN = PipelineDefinition(plain)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.yaml", "epochs: 5\nmodel:\n  C: 0.5\n"),
        ("p.yml", "epochs: 5\nmodel: {C: 0.5}\n"),
        ("p.toml", "epochs = 5\n[model]\nC = 0.5\n"),
        ("p.json", '{"epochs": 5, "model": {"C": 0.5}}'),
    ],
)
def test_each_format_loads(tmp_path: Path, name: str, text: str) -> None:
    loaded = load_params_file(write(tmp_path, name, text))
    assert loaded.data == {"epochs": 5, "model": {"C": 0.5}}
    assert loaded.content == text.encode()
    assert loaded.digest == digest_bytes(text.encode())
    assert loaded.format == {"yml": "yaml"}.get(name[2:], name[2:])


def test_an_empty_yaml_file_holds_no_params(tmp_path: Path) -> None:
    assert load_params_file(write(tmp_path, "empty.yaml", "# nothing\n")).data == {}


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("bad.yaml", "epochs: 5\nmodel:\n  C: [0.5\n", 4, r"bad\.yaml, line 4, column 1: malf"),
        ("bad.yaml", "a: 1\n  b: 2\n", 2, r"bad\.yaml, line 2, column 4: malformed YAML"),
        ("bad.toml", "epochs = 5\nC = \n", 2, r"bad\.toml, line 2, column 5: malformed TOML"),
        ("bad.json", '{"epochs": 5,\n}', 2, r"bad\.json, line 2, column 1: malformed JSON"),
    ],
)
def test_malformed_files_name_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, message: str
) -> None:
    with pytest.raises(ParamsFileError, match=message) as info:
        load_params_file(write(tmp_path, name, text))
    assert info.value.line == line
    assert info.value.path.endswith(name)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("list.yaml", "- 1\n- 2\n", "the top level must be a table of parameters"),
        ("keys.yaml", "1: x\n", "key 1 must be non-empty text, not int"),
        ("nested.yaml", "model:\n  2: x\n", r"key 'model\.'2 must be|key model\.2"),
        ("p.ini", "a=1", "unknown format '.ini'"),
    ],
)
def test_files_that_are_not_params_tables(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(ParamsFileError, match=message):
        load_params_file(write(tmp_path, name, text))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("twice.yaml", "epochs: 5\nepochs: 6\n", r"line 2, column 1: malformed YAML: key 'epochs'"),
        ("nested.yaml", "model:\n  C: 1\n  C: 2\n", r"line 3, column 3: .*key 'C' appears twice"),
        ("twice.json", '{"epochs": 5, "epochs": 6}', r"malformed JSON: key 'epochs' appears twice"),
    ],
)
def test_a_key_given_twice_is_refused_not_silently_overwritten(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(ParamsFileError, match=message):
        load_params_file(write(tmp_path, name, text))


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = "base: &b\n  C: 1.0\nmodel:\n  <<: *b\n  C: 0.5\n"
    assert load_params_file(write(tmp_path, "m.yaml", text)).data["model"] == {"C": 0.5}


def test_a_dotted_key_clash_inside_a_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "clash.yaml", "epochs: 2\nepochs.x: 1\n")
    with pytest.raises(ParamError, match=r"^params file .*clash\.yaml: parameter 'epochs\.x'"):
        load_params([path])


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsFileError, match="does not exist"):
        load_params_file(tmp_path / "nope.yaml")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ParamsFileError, match="is not UTF-8"):
        load_params_file(tmp_path / "latin.yaml")


def test_later_files_and_overrides_win(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", "epochs: 5\nmodel:\n  C: 0.5\n")
    fast = write(tmp_path, "fast.toml", "[model]\nC = 0.7\n")
    assert load_params([base, fast]) == {"epochs": 5, "model": {"C": 0.7}}
    assert load_params([base, fast], {"model.C": 0.9}) == {"epochs": 5, "model": {"C": 0.9}}
    files = [load_params_file(base), load_params_file(fast)]
    resolved = resolve_run_params(TRAIN, {"epochs": "2"}, files)
    assert resolved == {"epochs": 2, "model": ModelConfig(C=0.7)}


def test_errors_name_the_file_the_key_and_the_reason(tmp_path: Path) -> None:
    base = load_params_file(write(tmp_path, "base.yaml", "epochs: x\nmodel:\n  D: 1\n"))
    over = load_params_file(write(tmp_path, "over.json", '{"model": {"C": "abc"}}'))
    with pytest.raises(ParamError) as info:
        resolve_run_params(TRAIN, {}, [base, over])
    text = str(info.value)
    assert f"params file {base.name}: key 'model.D' is unknown" in text
    assert f"params file {base.name}: key 'epochs' expects int, got 'x'" in text
    assert f"params file {over.name}: key 'model.C' expects float, got 'abc'" in text


def test_an_override_is_named_as_such(tmp_path: Path) -> None:
    base = load_params_file(write(tmp_path, "base.yaml", "epochs: 2\n"))
    with pytest.raises(ParamError, match=r"override \(-p or run\(\) argument\): key 'C'"):
        resolve_run_params(PLAIN, {"C": "abc"}, [base])
    other = load_params_file(write(tmp_path, "b.yaml", "bogus: 1"))
    with pytest.raises(ParamError, match=rf"params file {other.name}: key 'bogus' is not a"):
        resolve_run_params(PLAIN, {}, [base, other])


def test_without_files_errors_are_the_plain_ones() -> None:
    with pytest.raises(ParamError, match="parameter 'C' expects float"):
        resolve_run_params(PLAIN, {"C": "abc"})


def test_records_store_each_file_and_name_it_relative_to_the_project(tmp_path: Path) -> None:
    loaded = load_params_file(write(tmp_path, "conf.yaml", "epochs: 1\n"))
    store = MemoryStore()
    payload, artifacts = params_file_records([loaded], store, root=tmp_path)
    assert payload == [{"name": "conf.yaml", "digest": loaded.digest, "format": "yaml"}]
    ((record, role),) = artifacts
    assert role == "params-file"
    assert record.digest == record.blob == loaded.digest
    assert record.type_name == "application/yaml"
    assert store.get_bytes(loaded.digest) == b"epochs: 1\n"

"""Numpy scalars in plain data, refusals that name the inner value, and format versions."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pipetrail.errors import SerializationError
from pipetrail.store import ContentStore, MemoryStore, SerializerRegistry, StoredArtifact
from pipetrail.store.serializers.base import copies_under, copy_parent
from pipetrail.store.serializers.json_format import JsonSerializer
from pipetrail.store.serializers.json_format import _decode_object as _json_decode_object
from pipetrail.store.serializers.pickle_format import PickleSerializer

if TYPE_CHECKING:
    from pathlib import Path

# -- numpy scalars inside plain data ---------------------------------------------------


def test_numpy_scalars_inside_containers_store_as_their_python_values(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    value = {
        "mean": np.float64(0.25),
        "count": np.int64(4),
        "small": np.uint8(7),
        "ok": np.bool_(False),
        "name": np.str_("fold"),
        "folds": [np.float32(0.5), (np.int32(-1), np.float16(1.5))],
        "missing": np.float64("nan"),
    }
    plain = {
        "mean": 0.25,
        "count": 4,
        "small": 7,
        "ok": False,
        "name": "fold",
        "folds": [0.5, [-1, 1.5]],
        "missing": math.nan,
    }
    record = registry.dump(value, store)
    assert record.serializer == "json"
    # The same bytes, so the same digest, as the Python values.
    assert record.digest == registry.dump(plain, store).digest
    loaded = registry.load(record, store)
    assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in plain.items()}
    assert [type(v) for v in loaded["folds"][1]] == [int, float]
    assert math.isnan(loaded["missing"])


def test_float32_comes_back_as_the_float_of_its_exact_value(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    loaded = registry.load(registry.dump([np.float32(0.1)], store), store)
    assert loaded == [float(np.float32(0.1))]


def test_numpy_str_keys_become_str(registry: SerializerRegistry, store: ContentStore) -> None:
    loaded = registry.load(registry.dump({np.str_("a"): 1}, store), store)
    assert loaded == {"a": 1}
    assert type(next(iter(loaded))) is str


def test_a_numpy_scalar_on_its_own_keeps_its_type(registry: SerializerRegistry) -> None:
    assert registry.for_value(np.float64(1.0)).name == "npy"
    assert registry.for_value([np.float64(1.0)]).name == "json"


@pytest.mark.parametrize(
    "value",
    [
        [np.complex128(1 + 2j)],
        {"when": np.datetime64("2024-01-01")},
        [np.bytes_(b"x")],
    ],
    ids=["complex", "datetime64", "bytes_"],
)
def test_numpy_scalars_without_a_json_form_are_refused(
    registry: SerializerRegistry, value: Any
) -> None:
    with pytest.raises(SerializationError, match=r"is not JSON data"):
        registry.dump(value, MemoryStore(), step="evaluate")


# -- refusals name the inner value -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"labels": {1, 2}},
            r"output\['labels'\]: builtins\.set is not JSON data; convert it "
            r"to a sorted list",
        ),
        (
            [1, {"cm": np.zeros((2, 2))}],
            r"output\[1\]\['cm'\]: numpy\.ndarray is not JSON "
            r"data; convert it with \.tolist\(\)",
        ),
        (
            {"a": [OrderedDict(b=1)]},
            r"output\['a'\]\[0\]: collections\.OrderedDict is not "
            r"JSON data; convert it to a plain dict or list",
        ),
        (
            {"scores": {1: 0.5}},
            r"output\['scores'\] has the key 1 of type builtins\.int; JSON "
            r"keys must be str",
        ),
        (
            (1, object()),
            r"output\[1\]: builtins\.object is not JSON data; convert it to None, "
            r"bool, int, float, str, a list or a dict with str keys",
        ),
    ],
    ids=["set", "ndarray", "ordered-dict", "int-key", "object"],
)
def test_an_unstorable_container_names_the_inner_value(
    registry: SerializerRegistry, value: Any, expected: str
) -> None:
    with pytest.raises(SerializationError, match=expected) as caught:
        registry.dump(value, MemoryStore(), step="evaluate")
    message = str(caught.value)
    assert message.startswith("Step 'evaluate' output of type builtins.")
    assert "pipetrail.register_serializer" in message


def test_the_path_starts_at_the_output_name(registry: SerializerRegistry) -> None:
    with pytest.raises(
        SerializationError,
        match=r"^Step 'evaluate' output 'metrics' of type builtins\.dict has no serializer "
        r"\(metrics\['mean'\]: numpy\.datetime64 is not JSON data",
    ):
        registry.dump(
            {"mean": np.datetime64("2024")}, MemoryStore(), step="evaluate", output="metrics"
        )


def test_the_json_serializer_refuses_directly_with_the_path() -> None:
    with pytest.raises(SerializationError, match=r"output\['x'\]\[0\]: builtins\.set"):
        JsonSerializer().dump({"x": [{1}]}, MemoryStore())
    assert JsonSerializer().refusal(object()) is None
    assert JsonSerializer().refusal({"fine": [1]}) is None


# -- format versions -------------------------------------------------------------------


class Versioned:
    """A user serializer for ints wrapped in this class, with a format version."""

    name = "versioned"

    def __init__(self, version: Any = 3) -> None:
        self.version = version

    def handles(self, value: Any) -> bool:
        return isinstance(value, Box)

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        data = str(value.n).encode()
        digest = store.put_bytes(data)
        return StoredArtifact(digest, digest, self.name, "tests.Box", len(data), {})

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        return Box(int(store.get_bytes(record.blob)))


class Unversioned(Versioned):
    name = "unversioned"

    def __init__(self) -> None:
        pass


@dataclasses.dataclass
class Box:
    n: int


def test_every_builtin_record_carries_its_format_version(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    versions = registry.format_versions()
    assert versions == {
        "json": 1,
        "bytes": 1,
        "file": 1,
        "folder": 1,
        "parquet": 1,
        "npy": 1,
        "skops": 1,
        "pickle": 1,
    }
    for value in ({"a": 1}, b"x", np.arange(3)):
        record = registry.dump(value, store)
        assert record.meta["format_version"] == versions[record.serializer]
    direct = PickleSerializer().dump(Box(1), store)
    assert direct.meta["format_version"] == 1


def test_a_user_serializer_version_is_recorded_and_listed(store: ContentStore) -> None:
    registry = SerializerRegistry.with_builtins()
    registry.register(Versioned())
    registry.register(Unversioned(), first=True)
    assert registry.format_versions()["versioned"] == 3
    assert registry.format_versions()["unversioned"] == 1
    assert registry.formats_label() == (
        "bytes@1 file@1 folder@1 json@1 npy@1 parquet@1 pickle@1 skops@1 unversioned@1 versioned@3"
    )
    record = registry.dump(Box(5), store)
    assert record.serializer == "unversioned"
    assert record.meta == {"format_version": 1}
    assert registry.load(record, store) == Box(5)


@pytest.mark.parametrize("bad", [0, -1, "2", 1.0, True])
def test_a_version_that_is_not_a_positive_int_is_refused(bad: Any) -> None:
    registry = SerializerRegistry.with_builtins()
    with pytest.raises(SerializationError, match=r"'versioned' has version .*positive int"):
        registry.register(Versioned(bad))
    assert "versioned" not in registry.format_versions()


def test_records_without_a_version_load_as_version_1(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    record = registry.dump({"a": (1, 2)}, store)
    old = StoredArtifact(**{**record.to_dict(), "meta": {"python_type": "dict"}})
    assert registry.load(old, store) == {"a": [1, 2]}


def test_a_record_of_a_newer_format_is_refused(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    record = registry.dump([1], store)
    newer = dataclasses.replace(record, meta={**record.meta, "format_version": 2})
    with pytest.raises(
        SerializationError, match=r"version 2 of the 'json' format.*up to 1; upgrade pipetrail"
    ):
        registry.load(newer, store)
    garbage = dataclasses.replace(record, meta={**record.meta, "format_version": "2"})
    with pytest.raises(SerializationError, match=r"format version '2'.*not a positive int"):
        registry.load(garbage, store)


# -- where loads put their copies ------------------------------------------------------


def test_folder_loads_copy_under_the_given_parent_only_when_asked(
    registry: SerializerRegistry, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("alpha")
    store = MemoryStore()
    record = registry.dump(source, store)
    asked: list[str] = []

    def parent() -> str:
        asked.append("yes")
        folder = tmp_path / "copies"
        folder.mkdir(exist_ok=True)
        return str(folder)

    with copies_under(parent):
        assert copy_parent() == str(tmp_path / "copies")
        registry.load(registry.dump({"a": 1}, store), store)
        assert len(asked) == 1  # plain data makes no copy
        loaded = registry.load(record, store)
    assert loaded.parent == tmp_path / "copies"
    assert (loaded / "a.txt").read_text() == "alpha"
    assert copy_parent() is None
    assert registry.load(record, store).parent != tmp_path / "copies"


# -- json loads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":[1,2.5,"x"],"b":{"$float":"nan"},"c":{"$float":"inf","d":1}}',
        '{"a": "\u00e9\U0001f600"}'.encode("utf-16"),
        b"\xef\xbb\xbf[1, 2]",
        b'"\\ud800"',
    ],
)
def test_json_loads_what_the_standard_library_reads(data: bytes) -> None:
    store = MemoryStore()
    digest = store.put_bytes(data)
    record = StoredArtifact(digest, digest, "json", "builtins.dict", len(data), {})
    loaded = JsonSerializer().load(record, store)
    expected = json.loads(data, object_hook=_json_decode_object)
    assert repr(loaded) == repr(expected)


def test_json_refuses_what_the_standard_library_refuses() -> None:
    store = MemoryStore()
    digest = store.put_bytes(b'{"a": ')
    record = StoredArtifact(digest, digest, "json", "builtins.dict", 6, {})
    with pytest.raises(json.JSONDecodeError):
        JsonSerializer().load(record, store)

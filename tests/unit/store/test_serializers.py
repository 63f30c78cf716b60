"""Built-in serializers and the registry: round-trips, digests, meta and error messages.

Tables (the parquet serializer) are covered in test_parquet_format.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from pipetrail.errors import SerializationError
from pipetrail.hashing import canonical_json, digest_bytes
from pipetrail.store import (
    ContentStore,
    MemoryStore,
    Serializer,
    SerializerRegistry,
    StoredArtifact,
    default_registry,
    register_serializer,
)
from pipetrail.store.serializers import registry as registry_module
from pipetrail.store.serializers.folder_format import FolderSerializer
from pipetrail.store.serializers.numpy_format import NpySerializer
from pipetrail.store.serializers.pickle_format import PickleSerializer

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.unit.store.conftest import RoundTrip


class Opaque:
    """A type no built-in serializer handles (module-level so pickle can find it)."""

    def __init__(self, value: int) -> None:
        self.value = value


def _double(x: Any) -> Any:
    return x * 2


# -- json ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_json_round_trips_any_plain_value(value: Any) -> None:
    registry = SerializerRegistry.with_builtins()
    store = MemoryStore()
    record = registry.dump(value, store)
    assert record.serializer == "json"
    loaded = registry.load(record, store)
    # Tuples come back as lists and NaN != NaN, so compare canonical encodings.
    assert canonical_json(loaded) == canonical_json(value)
    assert registry.dump(value, store).digest == record.digest


def test_json_meta_and_tuple_becomes_list(
    registry: SerializerRegistry, store: ContentStore
) -> None:
    record = registry.dump((1, "a", [2.5]), store)
    assert record.type_name == "builtins.tuple"
    assert record.meta == {"python_type": "tuple", "format_version": 1}
    assert record.digest == record.blob == digest_bytes(b'[1,"a",[2.5]]')
    assert registry.load(record, store) == [1, "a", [2.5]]


def test_json_non_finite_floats_round_trip(
    registry: SerializerRegistry, store: ContentStore, round_trip: RoundTrip
) -> None:
    value = {"nan": math.nan, "inf": math.inf, "neg": [-math.inf, -0.0]}
    loaded = round_trip(registry, store, value)
    assert math.isnan(loaded["nan"])
    assert loaded["inf"] == math.inf
    assert loaded["neg"][0] == -math.inf
    assert math.copysign(1, loaded["neg"][1]) == -1


def test_json_refuses_the_reserved_float_tag(
    registry: SerializerRegistry, round_trip: RoundTrip
) -> None:
    assert round_trip(registry, MemoryStore(), {"$float": 1, "x": 2}) == {"$float": 1, "x": 2}
    with pytest.raises(SerializationError, match=r"Step 'prep'.*'\$float'"):
        registry.dump({"$float": "nan"}, MemoryStore(), step="prep")


def test_json_takes_only_exact_builtin_types(registry: SerializerRegistry) -> None:
    assert registry.for_value({"a": [1, None]}).name == "json"
    assert registry.for_value(np.float64(1.0)).name == "npy"
    assert registry.for_value({1: "int key"}, allow_pickle=True).name == "pickle"


# -- bytes -----------------------------------------------------------------------------


def test_bytes_and_bytearray(
    registry: SerializerRegistry, store: ContentStore, round_trip: RoundTrip
) -> None:
    assert round_trip(registry, store, b"\x00raw") == b"\x00raw"
    loaded = round_trip(registry, store, bytearray(b"mutable"))
    assert isinstance(loaded, bytearray)
    assert loaded == bytearray(b"mutable")
    assert registry.dump(b"\x00raw", store).digest == digest_bytes(b"\x00raw")


# -- file and folder -------------------------------------------------------------------


def test_file_round_trip_is_read_only(
    registry: SerializerRegistry, store: ContentStore, tmp_path: Path
) -> None:
    src = tmp_path / "report.csv"
    src.write_text("a,b\n1,2\n")
    record = registry.dump(src, store)
    assert record.serializer == "file"
    assert record.type_name == "pathlib.Path"
    assert record.meta == {"name": "report.csv", "format_version": 1}
    loaded = registry.load(record, store)
    assert isinstance(loaded, Path)
    assert loaded.read_text() == "a,b\n1,2\n"
    assert loaded.stat().st_mode & 0o222 == 0
    if isinstance(store, MemoryStore):
        assert loaded.name == "report.csv"


def test_file_that_does_not_exist(registry: SerializerRegistry, tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match=r"Step 'export'.*not an existing regular file"):
        registry.dump(tmp_path / "missing.csv", MemoryStore(), step="export")


def make_folder(root: Path) -> Path:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(b"\x00\x01")
    (root / "sub" / "deep" / "c.json").write_text("{}")
    return root


def test_folder_round_trip_and_location_independent_digest(
    registry: SerializerRegistry, store: ContentStore, tmp_path: Path
) -> None:
    first = make_folder(tmp_path / "one")
    second = make_folder(tmp_path / "two")
    record = registry.dump(first, store)
    assert record.serializer == "folder"
    assert record.meta == {"files": 3, "bytes": 9, "format_version": 1}
    assert registry.dump(second, store).digest == record.digest
    manifest = store.get_bytes(record.blob).decode()
    assert '"sub/deep/c.json"' in manifest
    loaded = registry.load(record, store)
    assert loaded != first
    assert sorted(p.relative_to(loaded).as_posix() for p in loaded.rglob("*") if p.is_file()) == [
        "a.txt",
        "sub/b.bin",
        "sub/deep/c.json",
    ]
    assert (loaded / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    (second / "a.txt").write_text("changed")
    assert registry.dump(second, store).digest != record.digest


def test_folder_materialize_into_given_folder(store: ContentStore, tmp_path: Path) -> None:
    folder = FolderSerializer()
    record = folder.dump(make_folder(tmp_path / "src"), store)
    target = folder.materialize(record, store, tmp_path / "out")
    assert (target / "a.txt").read_text() == "alpha"
    with pytest.raises(SerializationError, match="not empty"):
        folder.materialize(record, store, tmp_path / "out")


def test_folder_follows_links_inside_and_refuses_links_outside(
    registry: SerializerRegistry, tmp_path: Path, round_trip: RoundTrip
) -> None:
    root = make_folder(tmp_path / "art")
    (root / "alias.txt").symlink_to(root / "a.txt")
    loaded = round_trip(registry, MemoryStore(), root)
    assert (loaded / "alias.txt").read_text() == "alpha"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (root / "leak.txt").symlink_to(secret)
    with pytest.raises(SerializationError, match=r"symlink 'leak.txt' pointing outside"):
        registry.dump(root, MemoryStore())
    (root / "leak.txt").unlink()
    (root / "sub" / "loop").symlink_to(root)
    with pytest.raises(SerializationError, match="symlink cycle"):
        registry.dump(root, MemoryStore())


# -- numpy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.linspace(0, 1, 7),
        np.array([b"ab", b"c"]),
        np.array(["x", "yz"]),
        np.zeros((0, 3)),
        np.array(5),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    ],
)
def test_numpy_arrays_round_trip(
    registry: SerializerRegistry, store: ContentStore, array: np.ndarray[Any, Any]
) -> None:
    record = registry.dump(array, store)
    assert record.serializer == "npy"
    assert record.meta == {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "scalar": False,
        "format_version": 1,
    }
    loaded = registry.load(record, store)
    assert type(loaded) is np.ndarray
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


def test_numpy_layout_does_not_change_the_digest(registry: SerializerRegistry) -> None:
    c_order = np.arange(12.0).reshape(3, 4)
    f_order = np.asfortranarray(c_order)
    store = MemoryStore()
    assert registry.dump(c_order, store).digest == registry.dump(f_order, store).digest
    assert (
        registry.dump(c_order[:, ::2], store).digest
        == registry.dump(np.ascontiguousarray(c_order[:, ::2]), store).digest
    )


@pytest.mark.parametrize("scalar", [np.float32(1.5), np.int64(-3), np.bool_(True), np.str_("hi")])
def test_numpy_scalars_keep_their_type(
    registry: SerializerRegistry, store: ContentStore, scalar: np.generic
) -> None:
    record = registry.dump(scalar, store)
    assert record.meta["scalar"] is True
    assert record.type_name == f"numpy.{type(scalar).__name__}"
    loaded = registry.load(record, store)
    assert type(loaded) is type(scalar)
    assert loaded == scalar


def test_numpy_object_dtype_is_refused(registry: SerializerRegistry) -> None:
    objects = np.array([{"a": 1}, None], dtype=object)
    with pytest.raises(SerializationError, match="dtype object"):
        NpySerializer().dump(objects, MemoryStore())
    with pytest.raises(SerializationError, match=r"Step 'feat'.*dtype object.*allow_pickle=True"):
        registry.dump(objects, MemoryStore(), step="feat")
    record = registry.dump(objects, MemoryStore(), allow_pickle=True)
    assert record.serializer == "pickle"


# -- skops -----------------------------------------------------------------------------


def training_data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(60, 4))
    return features, (features[:, 0] + features[:, 1] > 0).astype(int)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(),
        lambda: Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]),
    ],
    ids=["logistic", "pipeline"],
)
def test_sklearn_models_predict_identically_after_load(
    registry: SerializerRegistry, store: ContentStore, make: Callable[[], Any]
) -> None:
    features, labels = training_data()
    model = make().fit(features, labels)
    record = registry.dump(model, store)
    assert record.serializer == "skops"
    assert record.type_name == f"{type(model).__module__}.{type(model).__qualname__}"
    loaded = registry.load(record, store)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))
    # A second, identical fit gives the same bytes: skops' id()-based names are renumbered.
    assert registry.dump(make().fit(features, labels), store).digest == record.digest


def test_skops_refuses_untrusted_types(registry: SerializerRegistry) -> None:
    features, _ = training_data()
    model = FunctionTransformer(func=_double).fit(features)
    store = MemoryStore()
    record = registry.dump(model, store)
    with pytest.raises(SerializationError, match=r"not from scikit-learn.*_double"):
        registry.load(record, store)


# -- pickle and the registry ---------------------------------------------------------


def test_unsupported_type_names_step_type_and_fix(registry: SerializerRegistry) -> None:
    expected = (
        r"Step 'train' output of type tests\.unit\.store\.test_serializers\.Opaque has no "
        r"serializer; register a serializer with pipetrail\.register_serializer\(\.\.\.\), or "
        r"pass allow_pickle=True to @step if you trust this artifact"
    )
    with pytest.raises(SerializationError, match=expected):
        registry.dump(Opaque(1), MemoryStore(), step="train")
    with pytest.raises(SerializationError, match=r"^Value of type .*Opaque has no serializer"):
        registry.for_value(Opaque(1))


def test_pickle_only_with_allow_pickle(registry: SerializerRegistry, store: ContentStore) -> None:
    record = registry.dump(Opaque(41), store, allow_pickle=True, step="train")
    assert record.serializer == "pickle"
    assert record.meta["trusted"] is True
    assert record.type_name.endswith("test_serializers.Opaque")
    assert registry.load(record, store).value == 41
    # allow_pickle never overrides a safe serializer.
    assert registry.dump({"a": 1}, store, allow_pickle=True).serializer == "json"


def test_pickle_load_requires_the_trusted_mark(store: ContentStore) -> None:
    record = PickleSerializer().dump(Opaque(1), store)
    untrusted = StoredArtifact(**{**record.to_dict(), "meta": {}})
    with pytest.raises(SerializationError, match="not marked trusted"):
        PickleSerializer().load(untrusted, store)


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees


class CelsiusSerializer:
    name = "celsius"

    def handles(self, value: Any) -> bool:
        return isinstance(value, Celsius)

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        data = repr(value.degrees).encode()
        digest = store.put_bytes(data)
        return StoredArtifact(digest, digest, self.name, "tests.Celsius", len(data), {})

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        return Celsius(float(store.get_bytes(record.blob)))


class AnyIntSerializer(CelsiusSerializer):
    name = "any-int"

    @classmethod
    def with_name(cls, name: str) -> AnyIntSerializer:
        serializer = cls()
        serializer.name = name
        return serializer

    def handles(self, value: Any) -> bool:
        return type(value) is int


def test_register_custom_serializer(
    registry: SerializerRegistry, store: ContentStore, round_trip: RoundTrip
) -> None:
    custom = CelsiusSerializer()
    assert isinstance(custom, Serializer)
    registry.register(custom)
    registry.register(custom)  # same instance again: no-op
    assert registry.names[-1] == "celsius"
    assert round_trip(registry, store, Celsius(21.5)).degrees == 21.5
    with pytest.raises(SerializationError, match="'celsius' is already registered"):
        registry.register(AnyIntSerializer.with_name("celsius"))
    with pytest.raises(SerializationError, match="is not a serializer"):
        registry.register(object())  # type: ignore[arg-type]
    registry.register(AnyIntSerializer(), first=True)
    assert registry.for_value(3).name == "any-int"
    assert registry.for_value([3]).name == "json"


def test_by_name_unknown(registry: SerializerRegistry) -> None:
    with pytest.raises(SerializationError, match="No serializer named 'hdf5'"):
        registry.by_name("hdf5")
    assert registry.by_name("pickle").name == "pickle"


def test_builtin_priority_order() -> None:
    assert SerializerRegistry.with_builtins().names == (
        "json",
        "bytes",
        "file",
        "folder",
        "parquet",
        "npy",
        "skops",
    )


def test_default_registry_is_shared_and_extended_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "_default", None)
    shared = default_registry()
    assert default_registry() is shared
    assert "celsius" not in shared.names
    register_serializer(CelsiusSerializer())
    assert default_registry().for_value(Celsius(1.0)).name == "celsius"


def test_serializer_failure_is_wrapped_with_context(registry: SerializerRegistry) -> None:
    mixed = pd.DataFrame({"bad": [1, "two", 3.0]})
    with pytest.raises(SerializationError, match=r"Step 'load'.*pandas\.DataFrame.*'parquet'"):
        registry.dump(mixed, MemoryStore(), step="load")


def test_stored_artifact_record(registry: SerializerRegistry) -> None:
    record = registry.dump({"k": [1, 2]}, MemoryStore())
    assert StoredArtifact.from_dict(record.to_dict()) == record
    assert hash(record) == hash(StoredArtifact.from_dict(record.to_dict()))
    with pytest.raises(AttributeError):
        record.digest = "x"  # type: ignore[misc]


def test_importing_pipetrail_store_imports_no_heavy_library() -> None:
    code = (
        "import sys, pipetrail.store, pipetrail.store.serializers.registry;"
        "heavy = {'pandas', 'numpy', 'pyarrow', 'polars', 'sklearn', 'skops', 'scipy'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"1",
        b'{"a":1}',
        b"\x00",
        b"a\x00",
        b"a\x00bc",
        b"\xef\xbb\xbf{}",
        b"\xff\xfe{\x00",
        b"\xfe\xff\x00{",
        b"\x00\x00\xfe\xff",
        b"\xff\xfe\x00\x00",
        '{"a":"é"}'.encode(),
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-16-be"),
        '{"a":1}'.encode("utf-32-le"),
        '{"a":1}'.encode("utf-32-be"),
    ],
)
def test_json_loads_detect_the_encoding_as_json_loads_does(data: bytes) -> None:
    from pipetrail.store.serializers.json_format import _encoding

    assert _encoding(data) == json.detect_encoding(data)

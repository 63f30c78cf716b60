"""How a stored value is read back: readings, their labels, and records rebuilt from them.

A reading is what step events record per output (docs/adr/0013-how-an-output-is-read.md):
the format, the type, the meta a serializer's load reads, and the stored object when it
is not the digest's. Loading the record rebuilt from a reading must give what loading the
full record gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest

from pipetrail.errors import SerializationError
from pipetrail.hashing import digest_value
from pipetrail.store import ContentStore, MemoryStore, SerializerRegistry, StoredArtifact
from pipetrail.store.serializers.registry import reading_label, record_from_reading

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _reload(registry: SerializerRegistry, store: ContentStore, value: Any) -> tuple[Any, Any]:
    """Load ``value`` back through its full record and through its reading."""
    record = registry.dump(value, store)
    rebuilt = record_from_reading(record.digest, registry.reading(record))
    return registry.load(record, store), registry.load(rebuilt, store)


@pytest.mark.parametrize(
    ("make", "same"),
    [
        (lambda: b"abc", lambda a, b: a == b and type(a) is type(b) is bytes),
        (lambda: bytearray(b"abc"), lambda a, b: a == b and type(a) is type(b) is bytearray),
        (lambda: np.float64(2.5), lambda a, b: a == b and type(a) is type(b) is np.float64),
        (lambda: np.array(2.5), lambda a, b: a == b and type(a) is type(b) is np.ndarray),
        (lambda: (1, [2]), lambda a, b: a == b == [1, [2]]),
        (
            lambda: pd.DataFrame({"a": pd.array([1, 2], dtype="Int64")}, index=[5, 6]),
            lambda a, b: a.equals(b) and list(a.dtypes) == list(b.dtypes),
        ),
    ],
    ids=["bytes", "bytearray", "npy-scalar", "npy-0d", "json", "pandas-extension"],
)
def test_a_reading_loads_what_the_full_record_loads(
    registry: SerializerRegistry,
    store: ContentStore,
    make: Callable[[], Any],
    same: Callable[[Any, Any], bool],
) -> None:
    full, read = _reload(registry, store, make())
    assert same(full, read)


def test_a_file_read_from_a_copy_keeps_its_name(
    registry: SerializerRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "report.csv"
    path.write_text("a\n1\n")
    store = MemoryStore()  # loads make named copies (a local store hands its own file)
    full, read = _reload(registry, store, path)
    assert full.name == read.name == "report.csv"
    assert read.read_text() == "a\n1\n"


def test_a_reading_holds_only_what_loading_reads(registry: SerializerRegistry) -> None:
    store = MemoryStore()
    array = registry.dump(np.arange(3), store)
    assert registry.reading(array) == {
        "format": "npy@1",
        "type_name": "numpy.ndarray",
        "size": array.size,
        "meta": {"scalar": False},  # dtype and shape are the content's: the digest has them
    }
    frame = registry.dump(pd.DataFrame({"a": [1]}), store)
    reading = registry.reading(frame)
    assert set(reading["meta"]) == {"library", "pandas"}
    assert reading["blob"] == frame.blob != frame.digest  # tables: another object


def test_equal_bytes_read_differently_have_different_labels(
    registry: SerializerRegistry,
) -> None:
    store = MemoryStore()
    as_bytes = registry.dump(b"1", store)
    as_json = registry.dump(1, store)
    as_bytearray = registry.dump(bytearray(b"1"), store)
    assert as_bytes.digest == as_json.digest == as_bytearray.digest
    labels = {reading_label(registry.reading(r)) for r in (as_bytes, as_json, as_bytearray)}
    assert len(labels) == 3
    assert reading_label(registry.reading(as_bytes)).startswith("bytes@1 builtins.bytes ")
    again = registry.dump(b"1", store)
    assert reading_label(registry.reading(again)) == reading_label(registry.reading(as_bytes))


def test_a_label_names_the_digest_of_the_whole_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipetrail.store.serializers import registry as module

    monkeypatch.setattr(module, "_LABELS_MAX", 2)
    readings = [
        {"format": "json@1", "type_name": "builtins.int", "size": size, "meta": {}}
        for size in (1, 2, 3)
    ] + [{"format": "json@1", "type_name": "builtins.int", "size": 1, "meta": {"x": 1.5}}]
    for _ in range(2):  # made, then remembered (or made again once forgotten)
        labels = [reading_label(reading) for reading in readings]
        assert labels == [
            f"json@1 builtins.int {digest_value(reading)[7:19]}" for reading in readings
        ]
        assert len(set(labels)) == len(readings)
        assert len(module._LABELS) <= 2


class _Tagged:
    """A user serializer storing str values with a tag in meta."""

    name = "tagged"

    def handles(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith("tag:")

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        data = value.encode()
        digest = store.put_bytes(data)
        meta = {"tag": value[4:7], "note": "describes"}
        return StoredArtifact(digest, digest, self.name, "builtins.str", len(data), meta)

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        return store.get_bytes(record.blob).decode()


class _TaggedReadingTag(_Tagged):
    name = "tagged-declared"
    reading_meta = ("tag",)


def test_a_user_serializer_keeps_all_its_meta_unless_it_declares_what_it_reads() -> None:
    store = MemoryStore()
    registry = SerializerRegistry([_Tagged(), _TaggedReadingTag()])
    plain = registry.dump("tag:abc", store)
    assert registry.reading(plain)["meta"] == {"tag": "abc", "note": "describes"}
    declared = registry.by_name("tagged-declared").dump("tag:abc", store)
    assert registry.reading(declared)["meta"] == {"tag": "abc"}
    # Not registered: the registry cannot know what its load reads, so all of it.
    assert SerializerRegistry().reading(declared)["meta"] == {"tag": "abc", "note": "describes"}


def test_a_malformed_reading_meta_is_refused_at_registration() -> None:
    bad = _Tagged()
    bad.reading_meta = "tag"  # type: ignore[attr-defined]
    with pytest.raises(SerializationError, match="reading_meta 'tag'; it must be a tuple"):
        SerializerRegistry([bad])


@pytest.mark.parametrize(
    ("reading", "problem"),
    [
        ("bytes@1", "str, not an object"),
        ({"format": "bytes", "type_name": "t", "size": 1, "meta": {}}, "not NAME@VERSION"),
        ({"format": "bytes@0", "type_name": "t", "size": 1, "meta": {}}, "is not positive"),
        ({"format": "bytes@1", "size": 1, "meta": {}}, "no type_name"),
        ({"format": "bytes@1", "type_name": "t", "size": -1, "meta": {}}, "count of bytes"),
        ({"format": "bytes@1", "type_name": "t", "size": 1, "meta": []}, "meta is not"),
        ({"format": "bytes@1", "type_name": "t", "size": 1, "meta": {}, "x": 1}, "unknown keys"),
        ({"format": "a@1", "type_name": "t", "size": 1, "meta": {}, "blob": 3}, "blob is not"),
    ],
)
def test_a_malformed_reading_names_the_artifact(reading: Any, problem: str) -> None:
    with pytest.raises(SerializationError) as caught:
        record_from_reading("blake3:" + "0" * 64, reading)
    message = str(caught.value)
    assert problem in message
    assert "artifact blake3:" + "0" * 64 in message
    assert "pipetrail audit verify" in message


def test_a_reading_without_a_blob_reads_the_digest_object() -> None:
    digest = "blake3:" + "1" * 64
    record = record_from_reading(
        digest, {"format": "bytes@2", "type_name": "builtins.bytes", "size": 3, "meta": {}}
    )
    assert record.blob == digest
    assert record.serializer == "bytes"
    assert record.meta == {"format_version": 2}


def test_a_reading_met_before_is_checked_as_the_first_one_was() -> None:
    """The format parts remembered for one reading never let a malformed one through."""
    digest = "blake3:" + "2" * 64
    good = {"format": "bytes@3", "type_name": "builtins.bytes", "size": 3, "meta": {"k": 1}}
    first = record_from_reading(digest, good)
    again = record_from_reading(digest, dict(good))
    assert again == first
    assert again.meta == first.meta == {"k": 1, "format_version": 3}
    assert again.meta is not good["meta"]  # each record has its own meta
    for bad, problem in [
        ({**good, "size": -1}, "count of bytes"),
        ({**good, "size": True}, "count of bytes"),
        ({**good, "size": 1.0}, "count of bytes"),
        ({**good, "type_name": None}, "no type_name"),
        ({**good, "meta": []}, "meta is not"),
        ({**good, "format": ["bytes@3"]}, "not NAME@VERSION"),
        ({**good, "format": "bytes@x"}, "not NAME@VERSION"),
    ]:
        with pytest.raises(SerializationError, match=problem):
            record_from_reading(digest, bad)
    # A reading with more than the four keys still names its own object and sealing.
    other = record_from_reading(digest, {**good, "blob": "blake3:" + "3" * 64, "sealed": 1})
    assert other.blob == "blake3:" + "3" * 64
    assert other.meta == {"k": 1, "format_version": 3, "sealed": 1}

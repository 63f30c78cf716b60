"""Value fingerprints: type-tagged, order-independent where order is meaningless, no fallback."""

from __future__ import annotations

import datetime as dt
import enum
import math
import threading
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
import pydantic
import pytest

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import fingerprint, is_digest
from pipetrail.hashing.fingerprint import fingerprint_obj

# -- scalars ------------------------------------------------------------------------------


def test_fingerprint_is_a_digest() -> None:
    assert is_digest(fingerprint({"lr": 0.1}))


def test_int_float_and_bool_differ() -> None:
    digests = {fingerprint(1), fingerprint(1.0), fingerprint(True), fingerprint("1")}
    assert len(digests) == 4


def test_zero_like_values_differ() -> None:
    values: list[Any] = [0, 0.0, -0.0, False, None, "", [], {}, ()]
    digests = {fingerprint(value) for value in values}
    assert len(digests) == len(values)


def test_float_is_tagged() -> None:
    assert fingerprint_obj(1.5) == {"$f": 1.5}
    assert fingerprint_obj(2) == 2
    assert fingerprint_obj(True) is True


def test_non_finite_floats_are_fingerprinted_and_stable() -> None:
    assert fingerprint(math.nan) == fingerprint(float("nan"))
    assert len({fingerprint(math.nan), fingerprint(math.inf), fingerprint(-math.inf)}) == 3


def test_equal_values_give_equal_fingerprints() -> None:
    value = {"a": [1, 2.5, "x"], "b": {"c": None}}
    copy = {"b": {"c": None}, "a": [1, 2.5, "x"]}
    assert fingerprint(value) == fingerprint(copy)


def test_str_and_bytes_differ() -> None:
    assert fingerprint("ab") != fingerprint(b"ab")


def test_bytes_and_bytearray_of_same_content_agree() -> None:
    assert fingerprint(b"ab") == fingerprint(bytearray(b"ab"))
    assert fingerprint(b"ab") != fingerprint(b"ac")


# -- containers ---------------------------------------------------------------------------


def test_tuple_and_list_differ() -> None:
    assert fingerprint((1, 2)) != fingerprint([1, 2])
    assert fingerprint([(1, 2)]) != fingerprint([[1, 2]])
    assert fingerprint({"k": (1,)}) != fingerprint({"k": [1]})


def test_list_order_matters() -> None:
    assert fingerprint([1, 2]) != fingerprint([2, 1])


def test_dict_insertion_order_is_irrelevant() -> None:
    first = {"lr": 0.1, "epochs": 3, "layers": [64, 32]}
    second = {"layers": [64, 32], "epochs": 3, "lr": 0.1}
    assert list(first) != list(second)
    assert fingerprint(first) == fingerprint(second)


def test_dict_values_matter() -> None:
    assert fingerprint({"lr": 0.1}) != fingerprint({"lr": 0.2})
    assert fingerprint({"n": 1}) != fingerprint({"n": 1.0})


def test_set_iteration_order_is_irrelevant() -> None:
    # 0 and 8 share a slot in a small set's table, so insertion order decides iteration
    # order: the two sets are equal but iterate differently.
    first: set[int] = set()
    first.add(8)
    first.add(0)
    second: set[int] = set()
    second.add(0)
    second.add(8)
    assert list(first) != list(second)
    assert fingerprint(first) == fingerprint(second)


def test_set_of_strings_is_order_independent() -> None:
    words = ["delta", "alpha", "charlie", "bravo"]
    assert fingerprint(set(words)) == fingerprint(set(reversed(words)))
    assert fingerprint(frozenset(words)) == fingerprint(set(words))


def test_set_differs_from_list_and_by_content() -> None:
    assert fingerprint({1, 2}) != fingerprint([1, 2])
    assert fingerprint({1, 2}) != fingerprint({1, 3})
    assert fingerprint({1}) != fingerprint({1.0})


def test_namedtuple_keeps_field_names() -> None:
    point = namedtuple("point", ["x", "y"])  # the classic, untyped form

    class Pair(NamedTuple):
        a: int
        b: int

    assert fingerprint_obj(point(1, 2)) == {"$namedtuple": "point", "v": {"x": 1, "y": 2}}
    assert fingerprint(Pair(1, 2)) != fingerprint((1, 2))
    assert fingerprint(Pair(1, 2)) != fingerprint(point(1, 2))
    assert fingerprint(Pair(1, 2)) != fingerprint(Pair(1, 3))


def test_non_string_dict_key_is_refused() -> None:
    with pytest.raises(UnhashableValueError, match="dict key 1 of type int"):
        fingerprint({1: "a"})


# -- standard library types ---------------------------------------------------------------


def test_path_is_identified_by_its_posix_text() -> None:
    assert fingerprint_obj(Path("data") / "x.csv") == {"$path": "data/x.csv"}
    assert fingerprint(PurePosixPath("a/b")) == fingerprint(PureWindowsPath("a\\b"))
    assert fingerprint(Path("a/b")) != fingerprint(Path("a/c"))
    assert fingerprint(Path("a/b")) != fingerprint("a/b")


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Shade(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


def test_enum_members() -> None:
    assert fingerprint(Color.RED) == fingerprint(Color.RED)
    assert fingerprint(Color.RED) != fingerprint(Color.BLUE)
    assert fingerprint(Color.RED) != fingerprint(1)
    # Same name and value in another enum class: different meaning, different digest.
    assert fingerprint(Color.RED) != fingerprint(Shade.RED)
    assert fingerprint_obj(Color.BLUE) == {"$enum": f"{__name__}.Color", "v": 2}


def test_int_and_str_enums_keep_their_tag() -> None:
    # IntEnum/StrEnum dispatch through int/str; they must not collide with plain values.
    assert fingerprint(Level.LOW) != fingerprint(1)
    assert fingerprint(Mode.FAST) != fingerprint("fast")
    assert fingerprint_obj(Level.LOW) == {"$enum": f"{__name__}.Level", "v": 1}
    assert fingerprint_obj(Mode.FAST) == {"$enum": f"{__name__}.Mode", "v": "fast"}


def test_temporal_values() -> None:
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert fingerprint_obj(moment) == {"$datetime": "2024-01-02T03:04:05.000006+00:00"}
    assert fingerprint_obj(dt.date(2024, 1, 2)) == {"$date": "2024-01-02"}
    assert fingerprint_obj(dt.time(3, 4)) == {"$time": "03:04:00"}
    assert fingerprint_obj(dt.timedelta(days=1, seconds=2)) == {"$timedelta": [1, 2, 0]}
    digests = {
        fingerprint(moment),
        fingerprint(moment.replace(tzinfo=None)),
        fingerprint(moment + dt.timedelta(microseconds=1)),
        fingerprint(moment.date()),
        fingerprint(moment.date().isoformat()),
    }
    assert len(digests) == 5


# -- dataclasses and pydantic models ------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    epochs: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class OtherConfig:
    lr: float
    epochs: int
    tags: tuple[str, ...] = ()


@dataclass
class Holder:
    lock: Any = field(default_factory=threading.Lock)


def test_dataclass_by_fields() -> None:
    base = TrainConfig(lr=0.1, epochs=3)
    assert fingerprint(base) == fingerprint(TrainConfig(lr=0.1, epochs=3))
    assert fingerprint(base) != fingerprint(TrainConfig(lr=0.2, epochs=3))
    assert fingerprint(base) != fingerprint(TrainConfig(lr=0.1, epochs=3, tags=("a",)))
    assert fingerprint(base) != fingerprint(OtherConfig(lr=0.1, epochs=3))
    assert fingerprint(base) != fingerprint({"lr": 0.1, "epochs": 3, "tags": ()})


def test_dataclass_fields_are_type_tagged() -> None:
    assert fingerprint(TrainConfig(lr=1, epochs=3)) != fingerprint(TrainConfig(lr=1.0, epochs=3))


def test_dataclass_class_is_not_a_value() -> None:
    with pytest.raises(UnhashableValueError, match="cannot be fingerprinted"):
        fingerprint(TrainConfig)


def test_dataclass_with_unhashable_field_is_refused() -> None:
    with pytest.raises(UnhashableValueError, match="lock"):
        fingerprint(Holder())


class Settings(pydantic.BaseModel):
    lr: float = 0.1
    layers: list[int] = [64]


class OtherSettings(pydantic.BaseModel):
    lr: float = 0.1
    layers: list[int] = [64]


def test_pydantic_model_by_fields() -> None:
    assert fingerprint(Settings()) == fingerprint(Settings(lr=0.1, layers=[64]))
    assert fingerprint(Settings()) != fingerprint(Settings(lr=0.2))
    assert fingerprint(Settings()) != fingerprint(Settings(layers=[64, 32]))
    assert fingerprint(Settings()) != fingerprint(OtherSettings())
    assert fingerprint(Settings()) != fingerprint({"lr": 0.1, "layers": [64]})
    assert fingerprint_obj(Settings()) == {
        "$model": f"{__name__}.Settings",
        "v": {"layers": [64], "lr": {"$f": 0.1}},
    }


class Opaque:
    pass


# -- numpy --------------------------------------------------------------------------------


def test_numpy_array_by_dtype_shape_and_data() -> None:
    base = np.arange(6, dtype=np.int64)
    assert fingerprint(base) == fingerprint(np.arange(6, dtype=np.int64))
    assert fingerprint(base) != fingerprint(np.arange(6, dtype=np.int32))
    assert fingerprint(base) != fingerprint(base.reshape(2, 3))
    assert fingerprint(base.reshape(2, 3)) != fingerprint(base.reshape(3, 2))
    changed = base.copy()
    changed[5] = 99
    assert fingerprint(base) != fingerprint(changed)
    assert fingerprint(base) != fingerprint(base.tolist())


def test_numpy_zero_d_array_differs_from_one_element_array() -> None:
    assert fingerprint_obj(np.array(5))["shape"] == []
    assert fingerprint(np.array(5)) != fingerprint(np.array([5]))


def test_numpy_non_contiguous_array_equals_its_contiguous_copy() -> None:
    grid = np.arange(12, dtype=np.float64).reshape(3, 4)
    view = grid.T
    assert not view.flags["C_CONTIGUOUS"]
    assert fingerprint(view) == fingerprint(np.ascontiguousarray(view))
    assert fingerprint(grid[:, ::2]) == fingerprint(grid[:, ::2].copy())
    assert fingerprint(view) != fingerprint(grid)


def test_numpy_scalars() -> None:
    assert fingerprint(np.float64(1.5)) == fingerprint(np.float64(1.5))
    assert fingerprint(np.float64(1.5)) != fingerprint(np.float32(1.5))
    assert fingerprint(np.float32(1.5)) != fingerprint(1.5)
    assert fingerprint(np.int64(1)) != fingerprint(1)
    assert fingerprint(np.int64(1)) != fingerprint(np.int64(2))
    assert fingerprint_obj(np.bool_(True)) == {"$np": "bool", "v": True}
    assert fingerprint(np.float64(math.nan)) == fingerprint(np.float64(math.nan))


def test_numpy_object_arrays_by_their_items() -> None:
    # What scikit-learn keeps in feature_names_in_: an object array of column names.
    base = np.array([1, "a", None], dtype=object)
    assert fingerprint(base) == fingerprint(np.array([1, "a", None], dtype=object))
    assert fingerprint(base) != fingerprint(np.array([1.0, "a", None], dtype=object))
    assert fingerprint(base) != fingerprint(np.array([1, "b", None], dtype=object))
    assert fingerprint(base) != fingerprint([1, "a", None])
    grid = np.array([["a", "b"], ["c", "d"]], dtype=object)
    assert fingerprint(grid) != fingerprint(grid.T)


def test_numpy_object_arrays_of_unknown_values_are_refused() -> None:
    with pytest.raises(UnhashableValueError, match="Opaque"):
        fingerprint(np.array([Opaque(), 1], dtype=object))


def test_numpy_structured_arrays_keep_their_fields() -> None:
    first = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")])
    second = np.zeros(2, dtype=[("b", "<i4"), ("a", "<f4")])
    assert first.tobytes() == second.tobytes()
    assert fingerprint(first) != fingerprint(second)


def test_numpy_scalar_without_canonical_item_is_refused() -> None:
    with pytest.raises(UnhashableValueError):
        fingerprint(np.complex128(1 + 2j))


# -- unknown types ------------------------------------------------------------------------


def test_unknown_object_raises_helpful_error() -> None:
    with pytest.raises(UnhashableValueError) as info:
        fingerprint(Opaque())
    message = str(info.value)
    assert f"{__name__}.Opaque" in message
    assert "cannot be fingerprinted" in message
    assert "pipetrail.register_fingerprint(Opaque, fn)" in message


@pytest.mark.parametrize(
    "value",
    [
        [1, Opaque()],
        {"a": {"b": Opaque()}},
        (Opaque(),),
        {Opaque()},
        threading.Lock(),
        lambda x: x,
        1 + 2j,
    ],
    ids=["in-list", "in-dict", "in-tuple", "in-set", "lock", "lambda", "complex"],
)
def test_no_silent_fallback(value: Any) -> None:
    with pytest.raises(UnhashableValueError, match="cannot be fingerprinted"):
        fingerprint(value)


def test_plugins_can_register_types() -> None:
    class Celsius:
        def __init__(self, degrees: float) -> None:
            self.degrees = degrees

    @fingerprint_obj.register(Celsius)
    def _celsius(value: Celsius) -> Any:
        return {"$celsius": fingerprint_obj(value.degrees)}

    assert fingerprint_obj(Celsius(21.5)) == {"$celsius": {"$f": 21.5}}
    assert fingerprint(Celsius(21.5)) != fingerprint(Celsius(22.0))
    assert fingerprint([Celsius(1.0)]) == fingerprint([Celsius(1.0)])


# -- golden fingerprints ------------------------------------------------------------------
#
# GOLDEN VALUES. These pin the type tags of value fingerprints ("$f", "$tuple", "$set",
# "$path", ...), which feed every cache key. A failure here means cache keys changed: do it
# only on purpose, with a CHANGELOG entry and an update of
# docs/adr/0001-digests-and-canonical-encoding.md. Never paste new digests to make it pass.
GOLDEN_FINGERPRINTS: list[tuple[Any, str]] = [
    (1, "blake3:07e7f19c462be873020adfee2f9440942f041a5d85d65d31ae2700770bd669be"),
    (1.0, "blake3:3c73d7c6398179f1e606fd81cf247255a3202466425d9813d6994a8816a2c7e8"),
    (True, "blake3:3577c6b66c7cc8b725b18c63a859e8f9e603b6d945dc06ec8b659e5971fdc702"),
    ("a", "blake3:b777f5fc3074d58a394b9bfebbfce5e51277b4effba251b908935dc0d40f8fde"),
    ((1, 2), "blake3:4124f29812c86231049f6a53fbc0ca977bf99211890a3d162208b8e2bfcf6b0b"),
    ([1, 2], "blake3:b78590192bfab833e9ac2a094790fba0aac2301ec0e8729e8c927eee07d5f858"),
    (
        {"lr": 0.1, "epochs": 3},
        "blake3:101d059c4cc7a4fa2f17cd846a4609466235241c2c5665d994afab38112e26a4",
    ),
    ({2, 1}, "blake3:583606d8ca2affb32af2f7dd990ce782955f76c95f748d4887ec7f66f2759360"),
    (
        PurePosixPath("data/x.csv"),
        "blake3:88bf24c85c0a350bae8ac9ede1384f75cf017d8f45b43d157c794987ae79e513",
    ),
    (
        dt.date(2024, 1, 2),
        "blake3:8ff15be21a3e7bc61c5ca7531d95f8744307dbd822f697287532962e1f8d370d",
    ),
    (b"ab", "blake3:a3213e426dcf14886fbac1767c82571c26efc8bc35f1d8d7eb30ef1d09b432f5"),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN_FINGERPRINTS, ids=repr)
def test_golden_fingerprints(value: Any, expected: str) -> None:
    # See the GOLDEN VALUES comment above before changing anything here.
    assert fingerprint(value) == expected


def test_user_dict_keys_cannot_forge_type_tags() -> None:
    from pathlib import PurePosixPath

    from pipetrail.hashing import fingerprint

    assert fingerprint({"$path": "x"}) != fingerprint(PurePosixPath("x"))
    assert fingerprint({"$tuple": [1]}) != fingerprint((1,))
    assert fingerprint({"$f": 1}) != fingerprint(1.0)
    assert fingerprint({"$x": 1}) != fingerprint({"$$x": 1})

"""A step's start read off its closing event's payload: exactly what parsing it gives.

The second process of ``audit verify`` takes a ``step.started`` payload from the step's
closing event, directly after it, when the start's text is the canonical text of those
members (:class:`pipetrail.ledger.audit_parallel._Starts`); the model then builds one row
for the two (:class:`pipetrail.ledger.audit_model.ImpliedStart`). Both must give what
parsing and modelling each event on its own gives.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetrail.ledger.audit_model import ImpliedStart, TableModel
from pipetrail.ledger.audit_parallel import _parse, _Starts
from pipetrail.ledger.chain_check import parse_plain_payload

TS = "2026-01-01T00:00:00.000000Z"
KEYS = ("node_id", "pipeline", "run_id", "seed", "started_at", "step", "step_run_id")
START = {"step_run_id": "S1", "run_id": "R1", "node_id": "n", "step": "n", "pipeline": "p",
         "seed": 7, "started_at": TS}  # fmt: skip
CLOSING = {**START, "decision": "miss", "cache_key": "k", "ended_at": TS,
           "outputs": {"o": "d"}}  # fmt: skip


def _starts() -> _Starts:
    starts = _Starts()
    starts.keys = KEYS
    return starts


def _typed(value: Any) -> Any:
    """A value with the type of every member spelled out (``1 == 1.0 == True``)."""
    if isinstance(value, dict):
        return (type(value).__name__, [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(v) for v in value])
    return (type(value).__name__, value)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def _texts(value: Any) -> list[str]:
    """Texts of ``value``: canonical, spaced out, and as the standard library writes them."""
    texts = [json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)]
    texts.append(json.dumps(value, sort_keys=True))
    texts.append(json.dumps(value))
    return texts


@settings(max_examples=300, deadline=None)
@given(
    members=st.fixed_dictionaries({key: _json for key in KEYS}),
    extra=st.dictionaries(st.text(max_size=3), _json, max_size=2),
    other=st.dictionaries(st.sampled_from(KEYS), _json, max_size=2),
)
def test_a_start_read_off_its_closing_event_is_what_parsing_gives(
    members: dict[str, Any], extra: dict[str, Any], other: dict[str, Any]
) -> None:
    closing, written = _parse(_texts({**extra, **members})[0])
    starts = _starts()
    for start in (members, {**members, **other}, {**members, **extra}):
        for text in _texts(start):
            found = starts.implied(text, closing, written)
            if found is None:
                continue
            parsed, plain = parse_plain_payload(text)
            assert plain
            assert _typed(dict(found)) == _typed(parsed)


def test_a_start_is_read_off_only_a_closing_payload_orjson_wrote() -> None:
    text = orjson.dumps(START, option=orjson.OPT_SORT_KEYS).decode()
    starts = _starts()
    assert starts.implied(text, CLOSING, True) == START
    assert starts.implied(text, CLOSING, False) is None
    assert starts.implied(text, [CLOSING], True) is None
    assert starts.implied(text.encode(), CLOSING, True) is None  # a BLOB stored
    assert starts.implied(text[:-1] + "\ud800}", CLOSING, True) is None
    assert starts.implied(text, {k: v for k, v in CLOSING.items() if k != "seed"}, True) is None
    assert _Starts().implied(text, CLOSING, True) is None  # no start parsed yet


def test_the_names_read_are_those_of_the_last_start_parsed_in_full() -> None:
    starts = _Starts()
    text = orjson.dumps({**START, "code_source": "c"}, option=orjson.OPT_SORT_KEYS).decode()
    assert starts.parse(text)[1]
    assert starts.keys == ("code_source", *KEYS)
    starts.parse(json.dumps(START))  # not orjson's text: the names stay
    assert starts.keys == ("code_source", *KEYS)
    # A start lacking a member its row is built from by name: never the names read, so
    # that a start of that shape is always modelled on its own (and refused).
    lacking = {k: v for k, v in START.items() if k != "node_id"}
    assert starts.parse(orjson.dumps(lacking, option=orjson.OPT_SORT_KEYS).decode())[1]
    assert starts.keys == ("code_source", *KEYS)


def _model(events: list[tuple[str, int, dict[str, Any]]]) -> TableModel:
    model = TableModel()
    rows = [((seq, None, None, kind), p) for kind, seq, p in events]
    model.add(rows, None, plain=True)
    return model


def _implied(events: list[tuple[str, int, dict[str, Any]]]) -> list[tuple[str, int, Any]]:
    """The same events, each start directly before a closing event given as implied.

    Its values are the closing event's where they are equal (as reading them off it
    gives), its own elsewhere (a start read off another step's end, say).
    """
    out: list[tuple[str, int, Any]] = []
    for at, (kind, seq, p) in enumerate(events):
        following = events[at + 1][0] if at + 1 < len(events) else ""
        if kind == "step.started" and following.startswith("step.") and following != kind:
            closing = events[at + 1][2]
            p = ImpliedStart((k, closing[k] if closing.get(k) == v else v) for k, v in p.items())
        out.append((kind, seq, p))
    return out


SEQUENCES: dict[str, list[tuple[str, int, dict[str, Any]]]] = {
    "a start and its completion": [
        ("step.started", 1, START), ("step.completed", 2, CLOSING),
    ],
    "a start and its failure": [
        ("step.started", 1, START), ("step.failed", 2, {**CLOSING, "error": "bad"}),
    ],
    "a start and a hit": [
        ("step.started", 1, START), ("step.cached", 2, {**CLOSING, "decision": "hit"}),
    ],
    "a start of a step run that has a row": [
        ("step.completed", 1, CLOSING), ("step.started", 2, START),
        ("step.completed", 3, CLOSING),
    ],
    "a start before another step run's end": [
        ("step.started", 1, START),
        ("step.completed", 2, {**CLOSING, "step_run_id": "S2"}),
    ],
    "two starts": [
        ("step.started", 1, START), ("step.started", 2, {**START, "step_run_id": "S2"}),
        ("step.completed", 3, CLOSING),
    ],
    "a start with a closing row the check refuses": [
        ("step.started", 1, START), ("step.completed", 2, {**CLOSING, "seed": "7"}),
    ],
    "a start last": [("step.completed", 1, CLOSING), ("step.started", 2, START)],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SEQUENCES))
def test_a_start_read_off_its_closing_event_is_modelled_as_parsed(case: str) -> None:
    events = SEQUENCES[case]
    parsed, implied = _model(events), _model(_implied(events))
    assert list(parsed.steps.items()) == list(implied.steps.items())
    assert parsed.broken == implied.broken
    assert parsed.io == implied.io
    assert parsed.metrics == implied.metrics


def test_every_column_a_start_may_leave_out_allows_null() -> None:
    # Otherwise a start's row is checked on its own, and read off its closing event in vain.
    assert TableModel()._implied


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"b":[true,null,"x"]}',
        '{"b":1,"a":2}',  # keys not sorted: parsed, not written by orjson
        '{"a": 1}',
        '{"a":1,"a":2}',
        '{"a":"\\ud800"}',  # a lone surrogate, escaped
        '{"a":' + "9" * 30 + "}",  # an integer beyond 64 bits
        '{"a":1e400}',
        '{"a":NaN}',
        '{"a":1.0,"b":1e16}',
        "[1]",
        "7",
        "nope",
        "",
        '{"a":"é"}',
    ],
)
def test_the_second_process_parses_as_parse_plain_payload(text: str) -> None:
    """Its own first attempt at a payload gives what parse_plain_payload gives."""
    try:
        expected: tuple[Any, bool] = parse_plain_payload(text)
    except ValueError:
        expected = (None, False)
    found = _parse(text)
    assert repr(found) == repr(expected)


@pytest.mark.parametrize("stored", [5, 1.5, None, b'{"a":1}'])
def test_a_payload_stored_as_no_text_fails_as_parse_plain_payload_does(stored: Any) -> None:
    """A number, NULL or a BLOB in the payload column: the same exception, or result."""
    try:
        expected: Any = _outcome(parse_plain_payload, stored)
    except ValueError:
        expected = (None, False)
    assert repr(_outcome(_parse, stored)) == repr(expected)


def _outcome(parse: Any, stored: Any) -> Any:
    try:
        return parse(stored)
    except (TypeError, AttributeError) as exc:  # what gives the check to one process
        return type(exc)


def test_the_model_follows_every_kind_the_second_process_reads() -> None:
    """Its events go to the model without a look at their kinds (audit_parallel._model)."""
    from pipetrail.ledger.audit_model import MODEL_KINDS
    from pipetrail.ledger.audit_parallel import BESIDE_KINDS

    assert BESIDE_KINDS <= MODEL_KINDS

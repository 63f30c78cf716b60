"""Classification labels: declared on sources and steps, validated with clear messages."""

from __future__ import annotations

import pytest

from pipetrail import source, step
from pipetrail.core.classification import LABELS, SENSITIVE, is_sensitive, strictest
from pipetrail.errors import DefinitionError


def test_the_documented_labels_in_order() -> None:
    assert LABELS == ("public", "internal", "confidential", "pii", "phi")
    assert {label for label in LABELS if is_sensitive(label)} == SENSITIVE
    assert strictest([None, "internal", "pii", "confidential"]) == "pii"
    assert strictest([]) == "public"


def test_source_labels() -> None:
    assert source("data/patients.csv", classification="pii").classification == "pii"
    assert source("data/x.csv", classification="public").classification is None
    assert source("data/x.csv").classification is None
    with pytest.raises(DefinitionError, match=r"source\('data/p.csv'\): classification 'PII'"):
        source("data/p.csv", classification="PII")


def test_step_labels_by_output_or_for_all() -> None:
    @step(classification={"output": "public"})
    def counts(df: int) -> int:
        return df

    assert counts.options.classification == (("output", "public"),)

    @step(outputs=("a", "b"), classification="pii")
    def both(x: int) -> tuple[int, int]:
        return x, x

    assert dict(both.options.classification) == {"a": "pii", "b": "pii"}


def test_an_unknown_label_names_the_step_and_the_output() -> None:
    with pytest.raises(DefinitionError, match=r"step 'f' output 'output': classification 'secret'"):

        @step(classification={"output": "secret"})
        def f(x: int) -> int:
            return x

    with pytest.raises(DefinitionError, match=r"names the output 'out'.*'output'"):

        @step(classification={"out": "pii"})
        def g(x: int) -> int:
            return x

"""Column lineage from privacy records: which input column, which transformations."""

from __future__ import annotations

from pipetrail.lineage.exports.privacy_lineage import (
    column_lineage,
    operation_attributes,
    privacy_operations,
)

NS = "pipetrail://p"


def _pseudo(*columns: str) -> dict[str, object]:
    return {
        "op": "pseudonymize",
        "args": {"columns": list(columns)},
        "columns": list(columns),
        "algorithm": "blake3-keyed-128",
        "key_id": "pseudonym:abc",
    }


def test_columns_are_traced_to_the_input_that_has_them() -> None:
    inputs = [(NS, "p.a.output", ["id", "city"]), (NS, "p.b.output", ["email"])]
    facet = column_lineage([_pseudo("email", "id")], inputs, ["id", "email", "city"])
    assert facet is not None
    email = facet["fields"]["email"]["inputFields"][0]
    assert (email["name"], email["field"]) == ("p.b.output", "email")
    assert email["transformations"][0]["masking"] is True
    assert facet["fields"]["id"]["inputFields"][0]["name"] == "p.a.output"
    assert "city" not in facet["fields"]  # untouched: nothing is claimed about it
    assert "dataset" not in facet


def test_a_column_no_input_has_is_left_out_with_several_inputs() -> None:
    inputs = [(NS, "p.a.output", None), (NS, "p.b.output", None)]
    assert column_lineage([_pseudo("ghost")], inputs, None) is None


def test_drop_and_columns_outside_the_output_schema_say_nothing() -> None:
    inputs = [(NS, "p.a.output", None)]
    dropped = {"op": "drop", "args": {"columns": ["ssn"]}, "columns": ["ssn"]}
    assert column_lineage([dropped], inputs, None) is None
    # Pseudonymized, then dropped: no output field.
    assert column_lineage([_pseudo("ssn"), dropped], inputs, None) is None
    assert column_lineage([_pseudo("id")], inputs, ["other"]) is None


def test_an_aggregate_without_suppression_has_no_filter() -> None:
    agg = {
        "op": "aggregate",
        "args": {"by": ["city"], "aggs": {"total": "amount:sum"}, "min_group_size": 1},
        "groups": 3,
        "groups_suppressed": 0,
        "rows_suppressed": 0,
    }
    facet = column_lineage([agg], [(NS, "p.a.output", None)], ["city", "n", "total"])
    assert facet is not None
    (total,) = facet["fields"]["total"]["inputFields"]
    assert total["field"] == "amount"
    assert total["transformations"][0]["subtype"] == "AGGREGATION"
    subtypes = {t["subtype"] for d in facet["dataset"] for t in d["transformations"]}
    assert subtypes == {"GROUP_BY"}


def test_only_privacy_operations_are_taken_and_described() -> None:
    ops = privacy_operations([{"op": "sample", "n": 3}, _pseudo("id"), "junk"])
    assert [op["op"] for op in ops] == ["pseudonymize"]
    attributes = operation_attributes(ops[0])
    assert attributes["operation"] == "pseudonymize"
    assert attributes["key_id"] == "pseudonym:abc"
    assert attributes["masking"] is True

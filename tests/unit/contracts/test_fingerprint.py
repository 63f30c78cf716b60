"""Contract fingerprints: stable, and different whenever what is checked differs."""

from __future__ import annotations

import pandera.pandas as pa
import pyarrow
import pydantic

from pipetrail.contracts import Contract, fingerprint_contract


def _fp(contract: Contract) -> str:
    return fingerprint_contract(contract).digest


def _ages(low: int = 0) -> pa.DataFrameSchema:
    return pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(low))})


def test_equal_contracts_have_equal_fingerprints() -> None:
    assert _fp(Contract(_ages())) == _fp(Contract(_ages()))
    assert _fp(Contract(_ages())).startswith("blake3:")


def test_check_arguments_rows_and_nullability_change_the_fingerprint() -> None:
    base = _fp(Contract(_ages()))
    assert _fp(Contract(_ages(1))) != base
    assert _fp(Contract(_ages(), rows=(1, None))) != base
    nullable = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0), nullable=True)})
    assert _fp(Contract(nullable)) != base


def test_custom_check_code_is_covered() -> None:
    def small(s: object) -> object:
        return s < 10  # type: ignore[operator]

    def smaller(s: object) -> object:
        return s < 5  # type: ignore[operator]

    first = pa.DataFrameSchema({"x": pa.Column(int, pa.Check(small, name="limit"))})
    second = pa.DataFrameSchema({"x": pa.Column(int, pa.Check(smaller, name="limit"))})
    found = fingerprint_contract(Contract(first))
    assert found.unhashable == ()
    assert found.digest != _fp(Contract(second))


def test_arrow_schemas_fingerprint_their_serialized_form() -> None:
    one = pyarrow.schema([pyarrow.field("a", pyarrow.int64())])
    same = pyarrow.schema([pyarrow.field("a", pyarrow.int64())])
    other = pyarrow.schema([pyarrow.field("a", pyarrow.int64(), nullable=False)])
    assert _fp(Contract(one)) == _fp(Contract(same))
    assert _fp(Contract(one)) != _fp(Contract(other))


def test_pydantic_models_fingerprint_schema_and_code() -> None:
    class A(pydantic.BaseModel):
        lr: float = pydantic.Field(gt=0)

    class B(pydantic.BaseModel):
        lr: float = pydantic.Field(gt=1)

    assert _fp(Contract(A)) != _fp(Contract(B))
    assert _fp(Contract(A)) == _fp(Contract(A))

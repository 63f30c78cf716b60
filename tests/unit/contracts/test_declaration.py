"""Declaring contracts: kinds, row bounds, and what @step refuses at decoration time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
import pyarrow
import pydantic
import pytest

from pipetrail import Contract, DefinitionError, step
from pipetrail.core.contract import contract_kind

SCHEMA = pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0))})


class Config(pydantic.BaseModel):
    lr: float


class Ages(pa.DataFrameModel):
    age: int = pa.Field(ge=0)


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        (SCHEMA, "pandera"),
        (Ages, "pandera"),
        (pap.DataFrameSchema({"a": pap.Column(pl.Int64)}), "pandera-polars"),
        (pyarrow.schema([pyarrow.field("a", pyarrow.int64())]), "arrow"),
        (Config, "pydantic"),
        (None, "rows"),
    ],
)
def test_kinds_are_recognized_without_importing_the_libraries(schema: Any, kind: str) -> None:
    assert contract_kind(schema) == kind


def test_row_bounds_are_normalized_and_validated() -> None:
    assert Contract(SCHEMA, rows=(1, None)).rows == (1, None)
    assert Contract(rows=3).rows == (3, 3)
    with pytest.raises(DefinitionError, match="larger than the maximum"):
        Contract(SCHEMA, rows=(5, 1))
    with pytest.raises(DefinitionError, match="must not be negative"):
        Contract(SCHEMA, rows=(-1, None))
    with pytest.raises(DefinitionError, match="needs a schema, row-count bounds"):
        Contract()
    with pytest.raises(DefinitionError, match="cannot apply to the pydantic model"):
        Contract(Config, rows=(1, 2))


def test_an_unsupported_schema_is_refused() -> None:
    with pytest.raises(DefinitionError, match="is not a contract schema"):
        Contract({"age": int})
    with pytest.raises(DefinitionError, match="give the model class itself"):
        Contract(Config(lr=1.0))


def test_bare_schemas_are_wrapped_and_bound_to_inputs_and_outputs() -> None:
    @step(contracts={"output": SCHEMA, "df": Contract(SCHEMA, rows=(1, None))})
    def clean(df: pd.DataFrame) -> pd.DataFrame:
        return df

    bound = clean.options.contracts
    assert [(b.direction, b.name, b.label) for b in bound] == [
        ("input", "df", "input:df"),
        ("output", "output", "output:output"),
    ]
    assert bound[0].contract.rows == (1, None)


def test_an_unknown_name_is_refused_naming_parameters_and_outputs() -> None:
    with pytest.raises(DefinitionError, match=r"no input or output named 'frame'.*parameters: df"):

        @step(contracts={"frame": SCHEMA})
        def clean(df: pd.DataFrame) -> pd.DataFrame:
            return df


def test_a_name_both_parameter_and_output_is_ambiguous() -> None:
    with pytest.raises(DefinitionError, match="both a parameter and an output"):

        @step(contracts={"output": SCHEMA})
        def clean(output: pd.DataFrame) -> pd.DataFrame:
            return output


def test_a_frame_contract_on_a_dict_parameter_is_refused_at_decoration() -> None:
    with pytest.raises(DefinitionError, match=r"pandera contract on input 'cfg'.*annotated dict"):

        @step(contracts={"cfg": SCHEMA})
        def train(cfg: dict[str, Any]) -> int:
            return 1


def test_a_model_contract_on_a_frame_output_is_refused_at_decoration() -> None:
    with pytest.raises(DefinitionError, match="pydantic contract on output 'output'"):

        @step(contracts={"output": Config})
        def make() -> pd.DataFrame:
            return pd.DataFrame()


def test_a_contract_on_a_source_path_parameter_is_refused_at_decoration() -> None:
    # The step reads the source itself; the contract belongs on the table it returns.
    with pytest.raises(DefinitionError, match=r"contract on input 'raw'.*annotated pathlib\.Path;"):

        @step(contracts={"raw": SCHEMA})
        def ingest(raw: Path) -> pd.DataFrame:
            return pd.read_csv(Path(raw))


def test_named_outputs_take_their_annotation_from_the_tuple() -> None:
    with pytest.raises(DefinitionError, match="output 'test'"):

        @step(outputs=("train", "test"), contracts={"train": SCHEMA, "test": Config})
        def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
            return df, df


@pytest.mark.parametrize("hint", ["Any", "object", "pd.DataFrame | None", "'Unresolved'"])
def test_annotations_that_say_nothing_leave_the_check_to_run_time(hint: str) -> None:
    namespace: dict[str, Any] = {"pd": pd, "Any": Any, "step": step, "SCHEMA": SCHEMA}
    exec(  # noqa: S102 - builds a function with the annotation under test
        f"@step(contracts={{'df': SCHEMA}})\ndef clean(df: {hint}) -> int:\n    return 1\n",
        namespace,
    )
    assert namespace["clean"].options.contracts[0].name == "df"


def test_pydantic_contracts_accept_dicts_and_models_and_arrow_accepts_pandas() -> None:
    @step(contracts={"cfg": Config, "df": pyarrow.schema([("a", pyarrow.int64())])})
    def train(cfg: dict[str, float], df: pd.DataFrame) -> int:
        return 1

    @step(contracts={"cfg": Config})
    def tune(cfg: Config) -> int:
        return 1

    assert len(train.options.contracts) == 2
    assert len(tune.options.contracts) == 1

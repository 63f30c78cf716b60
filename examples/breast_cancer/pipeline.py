"""A real ML pipeline: breast-cancer diagnosis with logistic regression.

ingest (CSV source) -> clean -> split (seeded, stratified, leakage-checked) -> features
(scaler fitted on the training set only) -> train -> evaluate (metrics on the held-out
test set). Contracts guard the boundaries: the raw table's columns, types and ranges, the
features' scale, and the metrics' ranges.

Run it with `pipetrail run pipeline.py`; run it again and every step comes from the
cache; `pipetrail run pipeline.py -p C=0.3` re-runs only `train` and `evaluate`;
`pipetrail check pipeline.py` is the gate: contracts, reproduction, exit code.

scikit-learn is imported inside the steps that use it: a re-run whose steps all come from
the cache does not import it (about a second), and the cache keys still cover its version
(docs/adr/0018-a-pipelines-own-imports.md). pandas, pandera and pydantic are imported at
the top because the contracts below are built from them when the file loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, Field

from pipetrail import Contract, data, pipeline, source, step

if TYPE_CHECKING:
    from pathlib import Path

    from sklearn.linear_model import LogisticRegression

TARGET = "target"
FEATURES = 30

# The raw table: 30 non-negative measurements and a 0/1 label, at least 100 rows.
RAW = Contract(
    pa.DataFrameSchema(
        {
            r"^(mean|worst)_.*|.*_error$": pa.Column(
                float, pa.Check.ge(0), nullable=False, regex=True
            ),
            TARGET: pa.Column(int, pa.Check.isin([0, 1])),
        },
        strict=True,
    ),
    rows=(100, None),
)
# Standardized features: finite, no nulls, and the label still 0/1.
SCALED = pa.DataFrameSchema(
    {
        r"^(mean|worst)_.*|.*_error$": pa.Column(
            float, pa.Check(np.isfinite, element_wise=False), regex=True
        ),
        TARGET: pa.Column(int, pa.Check.isin([0, 1])),
    },
    strict=True,
)


class Metrics(BaseModel):
    """What `evaluate` returns; scores are shares, so between 0 and 1."""

    accuracy: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    roc_auc: float = Field(ge=0, le=1)
    test_rows: int = Field(gt=0)
    positives_share: float = Field(ge=0, le=1)


@step(contracts={"output": RAW})
def ingest(raw: Path) -> pd.DataFrame:
    """Read the raw CSV as it is."""
    return pd.read_csv(raw)


@step
def clean(df: pd.DataFrame, max_null_share: float = 0.0) -> pd.DataFrame:
    """Drop rows with missing values and exact duplicates; coerce the label to int."""
    out = df.dropna(thresh=int(len(df.columns) * (1 - max_null_share))).drop_duplicates()
    out[TARGET] = out[TARGET].astype("int64")
    print(f"clean: kept {len(out)} of {len(df)} rows")
    return out.reset_index(drop=True)


@step(outputs=("train", "test"))
def split(
    df: pd.DataFrame, test_size: float = 0.25, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into train and test sets, stratified by the label, with a fixed seed.

    `data.split` gives the same rows for the same table and seed on any machine, records
    the split in the ledger, and refuses subsets that share rows (leakage).
    """
    parts = data.split(df, {"train": 1 - test_size, "test": test_size}, seed=seed, stratify=TARGET)
    return parts["train"].reset_index(drop=True), parts["test"].reset_index(drop=True)


@step(outputs=("train_x", "test_x"), contracts={"train_x": SCALED, "test_x": SCALED})
def features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Standardize every feature with statistics of the training set only (no leakage)."""
    from sklearn.preprocessing import StandardScaler

    columns = [c for c in train.columns if c != TARGET]
    scaler = StandardScaler().fit(train[columns])

    def transform(frame: pd.DataFrame) -> pd.DataFrame:
        scaled = pd.DataFrame(scaler.transform(frame[columns]), columns=columns)
        scaled[TARGET] = frame[TARGET].to_numpy()
        return scaled

    return transform(train), transform(test)


@step
def train(train: pd.DataFrame, C: float = 1.0, max_iter: int = 1000) -> LogisticRegression:
    """Fit an L2-regularized logistic regression."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=max_iter)
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    return model


@step(contracts={"output": Metrics})
def evaluate(model: LogisticRegression, test: pd.DataFrame) -> dict[str, float]:
    """Score the model on the held-out test set."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    x, y = test.drop(columns=[TARGET]), test[TARGET]
    predicted = model.predict(x)
    scores = model.predict_proba(x)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted)),
        "roc_auc": float(roc_auc_score(y, scores)),
        "test_rows": len(y),
        "positives_share": float(np.mean(y)),
    }
    print("metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


@pipeline
def breast_cancer(C: float = 1.0, test_size: float = 0.25, split_seed: int = 7):
    """The whole pipeline; `C` is the regularization strength of the model."""
    df = clean(ingest(source("data/breast_cancer.csv")))
    train_df, test_df = split(df, test_size=test_size, seed=split_seed)
    train_x, test_x = features(train_df, test_df)
    model = train(train_x, C=C)
    return evaluate(model, test_x)

"""A real ML pipeline: breast-cancer diagnosis with logistic regression.

ingest (CSV source) -> clean -> split (seeded, stratified) -> features (scaler fitted on
the training set only) -> train -> evaluate (metrics on the held-out test set).

Run it with `pipetrail run pipeline.py`; run it again and every step comes from the
cache; `pipetrail run pipeline.py -p C=0.3` re-runs only `train` and `evaluate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from pipetrail import pipeline, source, step

if TYPE_CHECKING:
    from pathlib import Path

TARGET = "target"


@step
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
    """Split into train and test sets, stratified by the label, with a fixed seed."""
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=df[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


@step(outputs=("train", "test"))
def features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Standardize every feature with statistics of the training set only (no leakage)."""
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
    model = LogisticRegression(C=C, max_iter=max_iter)
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    return model


@step
def evaluate(model: LogisticRegression, test: pd.DataFrame) -> dict[str, float]:
    """Score the model on the held-out test set."""
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

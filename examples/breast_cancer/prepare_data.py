"""Write scikit-learn's bundled breast-cancer data set to data/breast_cancer.csv.

The example pipeline reads this CSV as a raw source, like real raw data from outside.
Running this again rewrites identical bytes, so the source digest does not change.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_breast_cancer

HERE = Path(__file__).parent


def main() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    target = HERE / "data" / "breast_cancer.csv"
    target.parent.mkdir(exist_ok=True)
    text = frame.to_csv(index=False, float_format="%.6g")
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    print(f"{target.relative_to(HERE)}: {len(frame)} rows, {len(frame.columns)} columns")


if __name__ == "__main__":
    main()

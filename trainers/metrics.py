"""Fraud evaluation: AUC ROC, average precision, card precision@k per day, calibration,
and the ROC, PR and calibration plots.

Card precision@k follows the published protocol (Le Borgne et al., *Reproducible
Machine Learning for Credit Card Fraud Detection*): each day, take the k cards with the
highest score that day (a card's score is its highest transaction score), count the
share that had a fraud that day, and average over days.

>>> import pandas as pd
>>> frame = pd.DataFrame({"day": ["d1"] * 4, "card": ["a", "a", "b", "c"],
...                       "score": [0.9, 0.1, 0.8, 0.2], "label": [0, 1, 0, 0]})
>>> card_precision_at_k(frame, k=2)
0.5
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def card_precision_at_k(frame: pd.DataFrame, k: int = 100) -> float:
    """Mean over days of the share of truly compromised cards among the top ``k`` cards.

    ``frame`` has columns ``day``, ``card``, ``score`` and ``label``.
    """
    cards = frame.groupby(["day", "card"]).agg(score=("score", "max"), label=("label", "max")).reset_index()
    per_day = [group.nlargest(k, "score")["label"].sum() / k for _, group in cards.groupby("day")]
    return float(np.mean(per_day)) if per_day else float("nan")


def card_precision_ceiling(frame: pd.DataFrame, k: int = 100) -> float:
    """Card precision@k of a perfect ranking: the most any model can reach on ``frame``.

    A day with fewer than ``k`` compromised cards caps that day's precision below 1.

    >>> frame = pd.DataFrame({"day": ["d1", "d1", "d2"], "card": ["a", "b", "a"],
    ...                       "score": [0.1, 0.9, 0.5], "label": [1, 0, 0]})
    >>> card_precision_ceiling(frame, k=2)
    0.25
    """
    return card_precision_at_k(frame.assign(score=frame["label"]), k)


def calibration(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Expected calibration error, and the table of mean score vs fraud rate per score bin."""
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges[1:-1], scores, side="right"), 0, bins - 1)
    table = pd.DataFrame({"bin": which, "score": scores, "label": labels}).groupby("bin").agg(
        mean_score=("score", "mean"), fraud_rate=("label", "mean"), n=("label", "size"))
    ece = float((table["n"] * (table["mean_score"] - table["fraud_rate"]).abs()).sum() / len(scores))
    return ece, table


def evaluate(frame: pd.DataFrame, k: int = 100) -> dict[str, float]:
    """AUC, AP, card precision@k and calibration error of ``frame`` (day, card, score, label)."""
    labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
    both = labels.min() != labels.max()
    return {
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "ap": float(average_precision_score(labels, scores)) if both else float("nan"),
        f"cp{k}": card_precision_at_k(frame, k),
        "ece": calibration(labels, scores)[0],
        "n": int(len(frame)), "n_fraud": int(labels.sum()),
    }


def plot(results: dict[str, pd.DataFrame], output: Path, title: str = "") -> list[Path]:
    """ROC, PR and calibration curves of one or more models' ``(score, label)`` frames."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("roc", "pr", "calibration"):
        fig, ax = plt.subplots(figsize=(5, 5))
        for model, frame in results.items():
            labels, scores = frame["label"].to_numpy(), frame["score"].to_numpy()
            if labels.min() == labels.max():
                continue
            if name == "roc":
                fpr, tpr, _ = roc_curve(labels, scores)
                ax.plot(fpr, tpr, label=f"{model} (AUC {roc_auc_score(labels, scores):.3f})")
                ax.plot([0, 1], [0, 1], ":", color="grey")
                ax.set(xlabel="false positive rate", ylabel="true positive rate")
            elif name == "pr":
                precision, recall, _ = precision_recall_curve(labels, scores)
                ax.plot(recall, precision,
                        label=f"{model} (AP {average_precision_score(labels, scores):.3f})")
                ax.set(xlabel="recall", ylabel="precision")
            else:
                _, table = calibration(labels, scores)
                ax.plot(table["mean_score"], table["fraud_rate"], "o-", label=model)
                ax.plot([0, 1], [0, 1], ":", color="grey")
                ax.set(xlabel="mean predicted probability", ylabel="observed fraud rate")
        ax.set_title(f"{title} {name}".strip())
        ax.legend(loc="best", fontsize=8)
        path = output / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths

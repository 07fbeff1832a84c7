"""Evaluation of a classifier: top-1, top-k, per-class precision / recall / accuracy and a confusion matrix.

One function for training (train subset and val, measured the same way), `doctor val` and the report. Plain
numpy on the softmax scores; the definitions are scikit-learn's and tests compare against it:
- top-1 = accuracy_score; top-k = top_k_accuracy_score (a sample counts when its class is among the k highest
  scores; ties are broken by class order, as argsort does);
- precision and recall per class = classification_report's (0 where undefined: a class never predicted has
  precision 0, one without samples recall 0), support = samples of the class;
- accuracy per class: one-vs-rest, (TP + TN) / N, the fraction of all samples the model gets right about
  "is it this class?" (recall is the fraction of the class's own samples it gets right);
- confusion[i, j] = samples of true class i predicted as j (confusion_matrix with labels 0..K-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassificationResult:
    """Metrics of one evaluation (one split)."""

    class_names: list[str]
    top1: float
    top5: float  # top-k with k = min(5, classes)
    precision: np.ndarray  # (K,)
    recall: np.ndarray  # (K,)
    accuracy: np.ndarray  # (K,) one-vs-rest
    support: np.ndarray  # (K,) samples per true class
    confusion: np.ndarray  # (K, K) rows true, columns predicted
    samples: int

    def to_json(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "samples": self.samples,
                "per_class": [{"class": name, "support": int(self.support[k]), "precision": float(self.precision[k]),
                               "recall": float(self.recall[k]), "accuracy": float(self.accuracy[k])}
                              for k, name in enumerate(self.class_names)],
                "confusion": self.confusion.tolist()}

    def most_confused(self, count: int = 5) -> list[tuple[int, int, int]]:
        """(true class, predicted class, samples) of the largest off-diagonal cells, largest first."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[:count]
        cells = [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape))]
        return [cell for cell in cells if cell[2] > 0]


def evaluate_classification(scores: np.ndarray, targets: np.ndarray, class_names: list[str] | tuple[str, ...],
                            top_k: int = 5) -> ClassificationResult:
    """scores (N, K) (probabilities or logits), targets (N,) class ids in 0..K-1."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    count = len(class_names)
    if scores.ndim != 2 or scores.shape[1] != count or len(targets) != len(scores):
        raise ValueError(f"scores must be (N, {count}) and targets (N,), got {scores.shape} and {targets.shape}")
    samples = len(targets)
    predicted = scores.argmax(axis=1) if samples else np.zeros(0, np.int64)
    confusion = np.bincount(targets * count + predicted, minlength=count * count).reshape(count, count)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(count), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(count), where=support > 0)
    false_positive, false_negative = predicted_count - true_positive, support - true_positive
    true_negative = samples - true_positive - false_positive - false_negative
    accuracy = (true_positive + true_negative) / max(samples, 1)
    k = min(top_k, count)
    # stable argsort of -scores: among equal scores the lower class id ranks first
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k] if samples else np.zeros((0, k), np.int64)
    top_hit = (top == targets[:, None]).any(axis=1)
    return ClassificationResult(
        class_names=list(class_names), top1=float((predicted == targets).mean()) if samples else 0.0,
        top5=float(top_hit.mean()) if samples else 0.0, precision=precision, recall=recall, accuracy=accuracy,
        support=support, confusion=confusion, samples=samples)

"""Classification metrics against scikit-learn: accuracy_score, top_k_accuracy_score, confusion_matrix and
classification_report, on random scores with missing and never-predicted classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, top_k_accuracy_score

from trainer.evaluation.classification import evaluate_classification

NAMES = [f"c{k}" for k in range(7)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets = rng.choice([0, 1, 2, 3, 4, 6], size=200, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])  # class 5 absent
    scores = rng.random((200, 7))
    scores[np.arange(200), targets] += rng.random(200) * 0.8  # a model better than chance
    scores[:, 6] *= 0.3  # class 6 rarely predicted
    result = evaluate_classification(scores, targets, NAMES)
    predicted = scores.argmax(axis=1)
    labels = list(range(7))
    assert result.top1 == pytest.approx(accuracy_score(targets, predicted))
    assert result.top5 == pytest.approx(top_k_accuracy_score(targets, scores, k=5, labels=labels))
    assert np.array_equal(result.confusion, confusion_matrix(targets, predicted, labels=labels))
    report = classification_report(targets, predicted, labels=labels, output_dict=True, zero_division=0)
    for k in labels:
        assert result.precision[k] == pytest.approx(report[str(k)]["precision"])
        assert result.recall[k] == pytest.approx(report[str(k)]["recall"])
        assert result.support[k] == report[str(k)]["support"]
    one_vs_rest = [accuracy_score(targets == k, predicted == k) for k in labels]
    assert np.allclose(result.accuracy, one_vs_rest)


def test_top_k_with_few_classes_and_most_confused() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    targets = np.array([0, 0, 1, 1])
    result = evaluate_classification(scores, targets, ["a", "b"])
    assert result.top1 == 0.5 and result.top5 == 1.0
    assert result.most_confused() == [(0, 1, 1), (1, 0, 1)]
    assert result.to_json()["per_class"][0] == {"class": "a", "support": 2, "precision": 0.5, "recall": 0.5,
                                                "accuracy": 0.5}


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="scores must be"):
        evaluate_classification(np.zeros((3, 2)), np.zeros(3), NAMES)

"""The label-error engine: planted errors of each kind found exactly, clean data quiet, thresholds per class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.audit.label_errors import (
    LabelErrorOptions,
    box_iou,
    calibrated,
    find_label_errors,
    same_image_pairs,
)
from dataset_doctor.errors import DoctorError

# One image with one error of each kind. Labels: [class, cx, cy, w, h]; predictions add a confidence.
LABELS = np.array([
    [0, 0.2, 0.2, 0.1, 0.1],  # 0: right, predicted right
    [0, 0.6, 0.6, 0.1, 0.1],  # 1: wrong class: the model says class 1 here
    [1, 0.3, 0.7, 0.1, 0.1],  # 2: mislocated: the model's class 1 sits 0.06 to the right (IoU 0.25)
    [0, 0.8, 0.2, 0.1, 0.1],  # 3: spurious: nothing predicted near it
])
PREDICTIONS = np.array([
    [0, 0.2, 0.2, 0.1, 0.1, 0.9],
    [1, 0.6, 0.6, 0.1, 0.1, 0.8],
    [0, 0.6, 0.6, 0.1, 0.1, 0.02],  # its own class, but not confidently
    [1, 0.36, 0.7, 0.1, 0.1, 0.85],
    [1, 0.5, 0.4, 0.1, 0.1, 0.7],  # an object nobody boxed ...
    [0, 0.505, 0.4, 0.1, 0.1, 0.5],  # ... predicted twice (an NMS leftover of another class)
    [1, 0.9, 0.9, 0.05, 0.05, 0.01],  # background noise at low confidence
])


def run(labels=LABELS, predictions=PREDICTIONS, **options):
    return find_label_errors(np.zeros(len(labels), np.int64), labels, np.zeros(len(predictions), np.int64),
                             predictions, num_classes=2, options=LabelErrorOptions(**options))


def test_each_planted_error_is_found_once_with_its_fix() -> None:
    found = run(confidence=0.3).suspects
    by_check = {row.check: row for row in found.itertuples()}
    assert sorted(found["check"]) == ["mislocated-box", "missing-box", "spurious-box", "wrong-class"]
    assert (by_check["wrong-class"].label_row, by_check["wrong-class"].cls,
            by_check["wrong-class"].suggested_class) == (1, 0, 1)
    mislocated = by_check["mislocated-box"]
    assert (mislocated.label_row, mislocated.cls) == (2, 1)
    assert [mislocated.cx, mislocated.cy, mislocated.w, mislocated.h] == pytest.approx([0.36, 0.7, 0.1, 0.1])
    assert mislocated.iou == pytest.approx(0.25)
    assert by_check["spurious-box"].label_row == 3
    missing = by_check["missing-box"]
    assert (missing.label_row, missing.prediction_row, missing.suggested_class) == (-1, 4, 1)  # the stronger one
    assert [missing.cx, missing.cy] == pytest.approx([0.5, 0.4])


def test_scores_follow_the_documented_formulas() -> None:
    found = run(confidence=0.3).suspects.set_index("check")
    assert found.at["missing-box", "score"] == pytest.approx(0.5 + 0.5 * (0.7 - 0.3) / 0.7)
    assert found.at["wrong-class", "score"] == pytest.approx((0.5 + 0.5 * 0.5 / 0.7) - 0.5 * 0.02 / 0.3)
    assert found.at["mislocated-box", "score"] == pytest.approx((0.5 + 0.5 * 0.55 / 0.7) * (1 - 0.25 / 0.5))
    # class 0 has 3 labels, 1 found confidently (label 0): recall (1 + 0.5) / (3 + 1); nothing near label 3
    assert found.at["spurious-box", "score"] == pytest.approx(1.5 / 4)
    assert list(run(confidence=0.3).suspects["score"]) == sorted(found["score"], reverse=True)


def test_clean_data_has_no_suspects() -> None:
    rng = np.random.default_rng(0)
    images, per_image = 200, 4
    image = np.repeat(np.arange(images), per_image)
    columns = [(0.125 + 0.25 * k) for k in range(per_image)]
    labels = np.column_stack([rng.integers(0, 3, len(image)), np.tile(columns, images),
                              rng.uniform(0.2, 0.8, len(image)), np.full(len(image), 0.1),
                              rng.uniform(0.05, 0.2, len(image))])
    found = labels.copy()
    found[:, 1:3] += rng.normal(0, 0.003, (len(labels), 2))
    noise_count = images * 20
    noise = np.column_stack([rng.integers(0, 3, noise_count), rng.uniform(0, 1, (noise_count, 2)),
                             rng.uniform(0.02, 0.3, (noise_count, 2)), rng.uniform(0.001, 0.05, noise_count)])
    predictions = np.concatenate([np.column_stack([found, rng.uniform(0.5, 1.0, len(found))]), noise])
    prediction_image = np.concatenate([image, rng.integers(0, images, noise_count)])
    result = find_label_errors(image, labels, prediction_image, predictions, num_classes=3)
    assert result.suspects.empty
    assert (result.thresholds > 0.5).all()  # learnt from the confident true matches, above the noise


def test_thresholds_are_per_class_so_a_rare_class_is_not_drowned() -> None:
    # Class 0 is found at 0.8-1.0, rare class 1 only at 0.2-0.3; one unlabelled object of each at 0.35.
    count = 40
    labels = np.array([[0 if k < 30 else 1, 0.05 + 0.02 * (k % 40), 0.5, 0.01, 0.01] for k in range(count)])
    image = np.arange(count)
    confidence = np.where(labels[:, 0] == 0, np.linspace(0.8, 1.0, count), np.linspace(0.2, 0.3, count))
    predictions = np.column_stack([labels, confidence])
    extra = np.array([[0, 0.5, 0.2, 0.1, 0.1, 0.35], [1, 0.5, 0.2, 0.1, 0.1, 0.35]])
    result = find_label_errors(image, labels, np.r_[image, 100, 101], np.vstack([predictions, extra]), 2)
    assert result.thresholds[1] < 0.35 < result.thresholds[0]
    missing = result.suspects[result.suspects["check"] == "missing-box"]
    assert missing["suggested_class"].tolist() == [1]
    overridden = find_label_errors(image, labels, np.r_[image, 100, 101], np.vstack([predictions, extra]), 2,
                                   LabelErrorOptions(class_confidence={0: 0.3}))
    assert sorted(overridden.suspects.loc[overridden.suspects["check"] == "missing-box", "suggested_class"]) == [0, 1]
    assert overridden.thresholds[0] == 0.3


def test_a_prediction_explained_by_its_own_label_is_not_a_wrong_class() -> None:
    # A person (0) on a bicycle (1): both labelled, both predicted; the bicycle prediction overlaps the person.
    labels = np.array([[0, 0.5, 0.5, 0.2, 0.4], [1, 0.5, 0.55, 0.2, 0.3]])
    predictions = np.array([[0, 0.5, 0.5, 0.2, 0.4, 0.9], [1, 0.5, 0.55, 0.2, 0.3, 0.9]])
    assert run(labels, predictions, confidence=0.3).suspects.empty


def test_images_are_kept_apart() -> None:
    labels = np.array([[0, 0.5, 0.5, 0.2, 0.2]])
    predictions = np.array([[0, 0.5, 0.5, 0.2, 0.2, 0.9]])
    result = find_label_errors(np.array([0]), labels, np.array([1]), predictions, 1, LabelErrorOptions(confidence=0.3))
    assert sorted(result.suspects["check"]) == ["missing-box", "spurious-box"]
    assert result.suspects.set_index("check").at["missing-box", "image"] == 1


def test_no_labels_or_no_predictions() -> None:
    empty_labels, empty_predictions = np.zeros((0, 5)), np.zeros((0, 6))
    assert run(empty_labels, empty_predictions).suspects.empty
    assert run(empty_labels, PREDICTIONS[:1], confidence=0.3).suspects["check"].tolist() == ["missing-box"]
    assert set(run(LABELS, empty_predictions).suspects["check"]) == {"spurious-box"}


def test_helpers() -> None:
    first, second = same_image_pairs(np.array([0, 1, 1]), np.array([1, 0, 1, 2]))
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 0), (2, 2)]
    assert box_iou(np.array([[0.5, 0.5, 0.2, 0.2]]), np.array([[0.6, 0.5, 0.2, 0.2]])) == pytest.approx([1 / 3])
    assert calibrated(np.array([0.0, 0.15, 0.3, 0.65, 1.0]), np.array(0.3)).tolist() == pytest.approx(
        [0, 0.25, 0.5, 0.75, 1])
    with pytest.raises(DoctorError, match="confidence"):
        LabelErrorOptions(confidence=1.5)


def test_chunks_of_images_give_the_same_suspects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crowded datasets are processed a group of images at a time: the result must not depend on the grouping."""
    import dataset_doctor.audit.label_errors as engine

    rng = np.random.default_rng(1)
    images = 60
    label_image = rng.integers(0, images, 300)
    labels = np.column_stack([rng.integers(0, 3, 300), rng.uniform(0.1, 0.9, (300, 2)),
                              rng.uniform(0.05, 0.3, (300, 2))])
    prediction_image = np.r_[label_image, rng.integers(0, images + 5, 400)]  # some images have predictions only
    jittered = labels + np.c_[np.zeros(300), rng.normal(0, 0.05, (300, 2)), np.zeros((300, 2))]
    jittered[:, 0] = np.where(rng.random(300) < 0.1, rng.integers(0, 3, 300), labels[:, 0])
    noise = np.column_stack([rng.integers(0, 3, 400), rng.uniform(0, 1, (400, 2)), rng.uniform(0.05, 0.3, (400, 2))])
    predictions = np.column_stack([np.r_[jittered, noise], rng.uniform(0.001, 1, 700)])
    whole = find_label_errors(label_image, labels, prediction_image, predictions, 3).suspects
    monkeypatch.setattr(engine, "MAX_PAIRS", 50)
    assert len(engine.image_chunks(label_image, prediction_image, 50)) > 10
    chunked = find_label_errors(label_image, labels, prediction_image, predictions, 3).suspects
    assert len(whole) > 20 and set(whole["check"]) == {"missing-box", "wrong-class", "mislocated-box",
                                                       "spurious-box"}
    key = ["check", "label_row", "prediction_row"]
    pd.testing.assert_frame_equal(whole.sort_values(key).reset_index(drop=True),
                                  chunked.sort_values(key).reset_index(drop=True))

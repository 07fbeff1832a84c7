"""Evaluation: agreement with pycocotools on noisy random data, hand-computed cases, confusion matrix, JSON."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.coco_reference import coco_bbox_evaluation
from trainer.evaluation import BACKGROUND, RECALL_GRID, evaluate_detections
from trainer.evaluation.boxes import flatten_ground_truth, flatten_predictions
from trainer.evaluation.confusion import confusion_matrix

TOLERANCE = 1e-3  # the contract; in practice the numbers agree to ~1e-15


# ---------------------------------------------------------------------------------------------------------------
# pycocotools as the reference


def coco_reference(ground_truth: list[np.ndarray], predictions: list[np.ndarray], num_classes: int) -> dict:
    """pycocotools' bbox evaluation of the same data: overall stats and per-class AP (NaN: no ground truth)."""
    images = [{"id": i + 1, "width": 1000, "height": 1000} for i in range(len(ground_truth))]
    annotations, detections = [], []
    for i, boxes in enumerate(ground_truth):
        for x1, y1, x2, y2, cls in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    for i, boxes in enumerate(predictions):
        for x1, y1, x2, y2, score, cls in boxes:
            detections.append({"image_id": i + 1, "category_id": int(cls) + 1,
                               "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    assert detections, "pycocotools cannot load an empty result list"
    evaluation = coco_bbox_evaluation(images, annotations, detections, num_classes)
    precision = evaluation.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area "all", maxDets 100
    has_truth = (precision > -1).all(axis=(0, 1))
    return {
        "map50_95": evaluation.stats[0], "map50": evaluation.stats[1],
        "ap50_95": np.where(has_truth, precision.mean(axis=(0, 1)), np.nan),
        "ap50": np.where(has_truth, precision[0].mean(axis=0), np.nan),
        "pr50": precision[0].T,  # (K, R)
    }


def assert_matches_coco(ground_truth: list[np.ndarray], predictions: list[np.ndarray], num_classes: int) -> None:
    result = evaluate_detections(ground_truth, predictions, [f"class{c}" for c in range(num_classes)])
    reference = coco_reference(ground_truth, predictions, num_classes)
    if np.isnan(result.map50_95):
        assert reference["map50_95"] == -1
    else:
        assert result.map50_95 == pytest.approx(reference["map50_95"], abs=TOLERANCE)
        assert result.map50 == pytest.approx(reference["map50"], abs=TOLERANCE)
    np.testing.assert_array_equal(np.isnan(result.ap50_95), np.isnan(reference["ap50_95"]))
    np.testing.assert_allclose(result.ap50_95, reference["ap50_95"], atol=TOLERANCE)
    np.testing.assert_allclose(result.ap50, reference["ap50"], atol=TOLERANCE)
    measurable = result.measurable
    np.testing.assert_allclose(result.pr_curves[measurable], reference["pr50"][measurable], atol=TOLERANCE)


def noisy_case(seed: int, images: int = 80, num_classes: int = 6, tied_scores: bool = False
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random ground truth and a flawed detector's output on it.

    Flaws: missed boxes, duplicates, wrong classes, poor localisation (IoUs spread over 0.5-0.95 and below),
    false positives, images without ground truth (some with predictions only), images without predictions,
    one crowded image with over 100 predictions of one class, a class that is never in the ground truth, a class
    never predicted, identical ground-truth boxes; optionally scores on a coarse grid (many ties).
    """
    rng = np.random.default_rng(seed)
    ground_truth, predictions = [], []
    never_labelled, never_predicted = num_classes - 1, num_classes - 2
    for image in range(images):
        count = 0 if rng.random() < 0.15 else int(rng.integers(1, 9))
        corner = rng.uniform(0, 800, (count, 2))
        size = rng.uniform(4, 200, (count, 2))
        classes = rng.integers(0, num_classes - 1, count)  # never `never_labelled`
        truth = np.column_stack([corner, corner + size, classes])
        if count >= 2 and rng.random() < 0.1:
            truth[1] = truth[0]  # the same object labelled twice
        ground_truth.append(truth)

        rows = []
        for x1, y1, x2, y2, cls in truth:
            if rng.random() < 0.2:  # missed
                continue
            for _ in range(1 + int(rng.random() < 0.25)):  # sometimes a duplicate
                width, height = x2 - x1, y2 - y1
                jitter = rng.normal(0, rng.choice([0.02, 0.08, 0.2]), 4) * [width, height, width, height]
                box = np.array([x1, y1, x2, y2]) + jitter
                box[2:] = np.maximum(box[2:], box[:2] + 1)
                label = cls if rng.random() > 0.1 else rng.integers(0, num_classes)
                if label == never_predicted:
                    label = never_labelled
                rows.append([*box, rng.random(), label])
        false_positives = int(rng.integers(0, 6))
        if image == 3:  # crowded: more than 100 predictions of one class in one image
            false_positives = 0
            for _ in range(130):
                x1, y1 = rng.uniform(0, 800, 2)
                rows.append([x1, y1, x1 + rng.uniform(4, 200), y1 + rng.uniform(4, 200), rng.random(), 0])
        for _ in range(false_positives):
            x1, y1 = rng.uniform(0, 800, 2)
            label = rng.choice([c for c in range(num_classes) if c != never_predicted])
            rows.append([x1, y1, x1 + rng.uniform(4, 200), y1 + rng.uniform(4, 200), rng.random(), label])
        if image % 11 == 5:  # an image nothing was predicted on
            rows = []
        table = np.array(rows, dtype=np.float64).reshape(-1, 6)
        if tied_scores:
            table[:, 4] = np.round(table[:, 4], 1)
        predictions.append(table)
    return ground_truth, predictions


# ---------------------------------------------------------------------------------------------------------------
# Agreement with pycocotools


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_agrees_with_pycocotools_on_noisy_predictions(seed: int) -> None:
    ground_truth, predictions = noisy_case(seed)
    assert max(len(p) for p in predictions) > 100
    assert_matches_coco(ground_truth, predictions, num_classes=6)


@pytest.mark.parametrize("seed", [10, 11])
def test_agrees_with_pycocotools_when_scores_tie(seed: int) -> None:
    ground_truth, predictions = noisy_case(seed, tied_scores=True)
    scores = np.concatenate([p[:, 4] for p in predictions])
    assert len(np.unique(scores)) <= 11  # heavily tied
    assert_matches_coco(ground_truth, predictions, num_classes=6)


def test_agrees_with_pycocotools_on_a_good_detector() -> None:
    """High AP too (the noisy cases sit low): small jitter, few misses."""
    rng = np.random.default_rng(7)
    ground_truth, predictions = [], []
    for _ in range(60):
        corner = rng.uniform(0, 600, (5, 2))
        truth = np.column_stack([corner, corner + rng.uniform(20, 150, (5, 2)), rng.integers(0, 3, 5)])
        ground_truth.append(truth)
        boxes = truth[:, :4] + rng.normal(0, 2, (5, 4))
        predictions.append(np.column_stack([boxes, rng.uniform(0.3, 1, 5), truth[:, 4]])[rng.random(5) > 0.05])
    result = evaluate_detections(ground_truth, predictions, ["a", "b", "c"])
    assert result.map50 > 0.9
    assert_matches_coco(ground_truth, predictions, num_classes=3)


_coordinate = st.integers(0, 12)
_box = st.tuples(_coordinate, _coordinate, st.integers(1, 6), st.integers(1, 6), st.integers(0, 2))
_scored_box = st.tuples(_coordinate, _coordinate, st.integers(1, 6), st.integers(1, 6), st.integers(0, 2),
                        st.sampled_from([0.1, 0.5, 0.5, 0.9]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(_box, max_size=4), st.lists(_scored_box, max_size=6)), min_size=1, max_size=4))
def test_agrees_with_pycocotools_on_small_integer_cases(images: list) -> None:
    """Integer boxes on a small grid make exact IoU ties, equal scores and identical boxes common."""
    ground_truth = [np.array([[x, y, x + w, y + h, c] for x, y, w, h, c in truth], dtype=np.float64).reshape(-1, 5)
                    for truth, _ in images]
    predictions = [np.array([[x, y, x + w, y + h, s, c] for x, y, w, h, c, s in found],
                            dtype=np.float64).reshape(-1, 6) for _, found in images]
    if not sum(len(p) for p in predictions):  # pycocotools cannot load empty results: every AP is 0 then
        result = evaluate_detections(ground_truth, predictions, ["a", "b", "c"])
        assert np.all(result.ap[result.measurable] == 0)
        return
    assert_matches_coco(ground_truth, predictions, num_classes=3)


def test_equal_iou_goes_to_the_last_box_as_in_coco() -> None:
    """COCO's loop replaces its pick on IoU >= best: of two boxes with the same IoU the later one is taken."""
    ground_truth = [np.array([[0, 0, 10, 5, 0], [0, 5, 10, 10, 0]], dtype=np.float64)]
    predictions = [np.array([[0, 0, 10, 10, 0.9, 0],  # IoU 0.5 with both boxes
                             [0, 0, 10, 6, 0.8, 0]], dtype=np.float64)]  # IoU 0.83 with the first only
    result = evaluate_detections(ground_truth, predictions, ["a"])
    assert result.ap50[0] == pytest.approx(1.0)  # first detection takes box 2, second takes box 1
    assert_matches_coco(ground_truth, predictions, num_classes=1)


# ---------------------------------------------------------------------------------------------------------------
# Hand-computed cases

SQUARE = [0.0, 0.0, 100.0, 100.0]
FAR = [500.0, 500.0, 600.0, 600.0]


def evaluate_one(truth: list[list[float]], found: list[list[float]], classes: int = 1, **options):
    return evaluate_detections([np.array(truth).reshape(-1, 5)], [np.array(found).reshape(-1, 6)],
                               [f"c{c}" for c in range(classes)], **options)


def test_one_perfect_detection_scores_one() -> None:
    result = evaluate_one([[*SQUARE, 0]], [[*SQUARE, 0.9, 0]])
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert (result.precision[0], result.recall[0], result.confidence[0]) == (1.0, 1.0, 0.9)
    np.testing.assert_allclose(result.pr_curves[0], 1.0)


def test_false_positive_ranked_above_the_true_positive_halves_ap() -> None:
    # ranked: FP (P 0, R 0), TP (P 1/2, R 1): the precision envelope is 1/2 at every recall point
    result = evaluate_one([[*SQUARE, 0]], [[*FAR, 0.9, 0], [*SQUARE, 0.8, 0]])
    assert result.ap50[0] == pytest.approx(0.5, abs=1e-12)
    assert result.ap50_95[0] == pytest.approx(0.5, abs=1e-12)
    # best F1 is at threshold 0.8 (F1 2/3), not 0.9 (nothing found)
    assert (result.precision[0], result.recall[0], result.confidence[0]) == (0.5, 1.0, 0.8)


def test_false_positive_ranked_below_the_true_positive_costs_nothing() -> None:
    result = evaluate_one([[*SQUARE, 0]], [[*SQUARE, 0.9, 0], [*FAR, 0.8, 0]])
    assert result.ap50[0] == pytest.approx(1.0)
    assert (result.precision[0], result.recall[0], result.confidence[0]) == (1.0, 1.0, 0.9)


def test_duplicate_detection_is_a_false_positive_after_the_match() -> None:
    result = evaluate_one([[*SQUARE, 0]], [[*SQUARE, 0.9, 0], [*SQUARE, 0.8, 0]])
    assert result.ap50[0] == pytest.approx(1.0)  # the duplicate comes after full recall
    assert result.confusion[0, 0] == 1 and result.confusion[0, 1] == 1  # one match, one background alarm


def test_half_the_objects_found_samples_51_of_101_recall_points() -> None:
    result = evaluate_one([[*SQUARE, 0], [*FAR, 0]], [[*SQUARE, 0.9, 0]])
    assert result.ap50[0] == pytest.approx(51 / 101, abs=1e-12)  # recall points 0, 0.01, ..., 0.50
    assert result.recall[0] == 0.5 and result.precision[0] == 1.0


def test_loose_box_counts_at_low_iou_thresholds_only() -> None:
    # IoU 0.72: a match at thresholds 0.50 ... 0.70, five of ten
    result = evaluate_one([[*SQUARE, 0]], [[0.0, 0.0, 100.0, 72.0, 0.9, 0]])
    assert result.ap50[0] == pytest.approx(1.0)
    assert result.ap50_95[0] == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose(result.ap[0], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_wrong_class_is_a_miss_and_a_false_positive() -> None:
    result = evaluate_one([[*SQUARE, 0]], [[*SQUARE, 0.9, 1]], classes=2)
    assert result.ap50[0] == 0.0
    assert np.isnan(result.ap50[1])  # no ground truth of class 1: not measurable
    assert result.map50 == 0.0


def test_classes_without_ground_truth_are_left_out_of_the_mean() -> None:
    result = evaluate_one([[*SQUARE, 0]], [[*SQUARE, 0.9, 0], [*FAR, 0.95, 1]], classes=3)
    assert result.map50 == pytest.approx(1.0)
    assert list(result.measurable) == [True, False, False]
    document = result.to_json()
    assert document["per_class"][1] == {"class": "c1", "instances": 0, "precision": None, "recall": None,
                                        "ap50": None, "ap50_95": None}


def test_only_the_top_100_per_image_and_class_count() -> None:
    clutter = [[1000.0 + 3 * i, 0.0, 1002.0 + 3 * i, 2.0, 0.99, 0] for i in range(100)]
    found = [*clutter, [*SQUARE, 0.5, 0]]
    assert evaluate_one([[*SQUARE, 0]], found).ap50[0] == 0.0  # the true positive is 101st
    assert evaluate_one([[*SQUARE, 0]], found, max_detections=101).ap50[0] == pytest.approx(1 / 101, abs=1e-12)
    # the cap is per class: a hundred predictions of another class do not push it out
    other_class = [[*box[:5], 1] for box in clutter]
    assert evaluate_one([[*SQUARE, 0]], [*other_class, [*SQUARE, 0.5, 0]], classes=2).ap50[0] == pytest.approx(1.0)


def test_equal_scores_across_images_are_ranked_in_image_order() -> None:
    """As COCO (stable sort over images in id order): the false positive of image 0 comes first."""
    ground_truth = [np.array([[*SQUARE, 0]]), np.array([[*SQUARE, 0]])]
    fp_first = [np.array([[*FAR, 0.5, 0]]), np.array([[*SQUARE, 0.5, 0]])]
    tp_first = [np.array([[*SQUARE, 0.5, 0]]), np.array([[*FAR, 0.5, 0]])]
    assert evaluate_detections(ground_truth, fp_first, ["a"]).ap50[0] == pytest.approx(0.5 * 51 / 101, abs=1e-12)
    assert evaluate_detections(ground_truth, tp_first, ["a"]).ap50[0] == pytest.approx(51 / 101, abs=1e-12)
    assert_matches_coco(ground_truth, fp_first, 1)
    assert_matches_coco(ground_truth, tp_first, 1)


def test_best_f1_threshold_never_splits_equal_scores() -> None:
    # TP 0.9, then FP and TP both at 0.7: thresholds are 0.9 (P 1, R 1/3) or 0.7 (P 2/3, R 2/3)
    truth = [[*SQUARE, 0], [200.0, 0.0, 300.0, 100.0, 0], [400.0, 0.0, 500.0, 100.0, 0]]
    found = [[*SQUARE, 0.9, 0], [*FAR, 0.7, 0], [200.0, 0.0, 300.0, 100.0, 0.7, 0]]
    result = evaluate_one(truth, found)
    assert result.precision[0] == pytest.approx(2 / 3) and result.recall[0] == pytest.approx(2 / 3)
    assert result.confidence[0] == 0.7


def test_nothing_predicted_gives_zero_ap_and_zero_p_r() -> None:
    result = evaluate_one([[*SQUARE, 0]], [])
    assert result.ap50[0] == 0.0 and result.precision[0] == 0.0 and result.recall[0] == 0.0
    assert np.isnan(result.confidence[0])


def test_no_ground_truth_at_all_has_no_map() -> None:
    result = evaluate_one([], [[*SQUARE, 0.9, 0]])
    assert np.isnan(result.map50) and result.to_json()["map50"] is None


def test_accepts_torch_tensors_and_empty_images() -> None:
    torch = pytest.importorskip("torch")
    result = evaluate_detections([torch.tensor([[*SQUARE, 0.0]]), torch.zeros(0, 5)],
                                 [torch.tensor([[*SQUARE, 0.9, 0.0]]), torch.zeros(0, 6)], ["a"])
    assert result.map50 == pytest.approx(1.0) and result.images == 2


def test_rejects_malformed_input() -> None:
    with pytest.raises(ValueError, match="class ids"):
        evaluate_one([[*SQUARE, 3]], [], classes=2)
    with pytest.raises(ValueError, match="shape"):
        evaluate_detections([np.zeros((1, 4))], [np.zeros((0, 6))], ["a"])
    with pytest.raises(ValueError, match="images"):
        evaluate_detections([np.zeros((0, 5))], [], ["a"])


# ---------------------------------------------------------------------------------------------------------------
# Outputs


def test_json_has_exactly_the_documented_shape() -> None:
    ground_truth, predictions = noisy_case(0, images=20)
    document = evaluate_detections(ground_truth, predictions, [f"c{c}" for c in range(6)]).to_json()
    assert set(document) == {"map50", "map50_95", "per_class"}
    assert isinstance(document["map50"], float) and isinstance(document["map50_95"], float)
    assert [row["class"] for row in document["per_class"]] == [f"c{c}" for c in range(6)]
    for row in document["per_class"]:
        assert list(row) == ["class", "instances", "precision", "recall", "ap50", "ap50_95"]
        assert isinstance(row["instances"], int)


def test_per_class_rows_and_pr_curves_for_the_run_directory() -> None:
    ground_truth, predictions = noisy_case(1, images=30)
    result = evaluate_detections(ground_truth, predictions, [f"c{c}" for c in range(6)])
    rows = result.per_class_rows()
    assert [row["class_id"] for row in rows] == list(range(6))
    images_with_class = [sum(int((truth[:, 4] == c).any()) for truth in ground_truth) for c in range(6)]
    assert [row["images"] for row in rows] == images_with_class
    assert [row["instances"] for row in rows] == [int(sum((t[:, 4] == c).sum() for t in ground_truth))
                                                  for c in range(6)]
    curves = result.pr_curves_json()
    assert curves["recall"] == pytest.approx(list(RECALL_GRID))
    assert set(curves["precision"]) == {f"c{c}" for c in range(6) if result.measurable[c]}
    for values in curves["precision"].values():
        assert len(values) == 101 and all(a >= b for a, b in zip(values, values[1:]))  # an envelope: non-increasing


# ---------------------------------------------------------------------------------------------------------------
# Confusion matrix


def naive_confusion(ground_truth: list[np.ndarray], predictions: list[np.ndarray], num_classes: int,
                    conf: float, iou_threshold: float) -> np.ndarray:
    """Greedy one-to-one matching by descending IoU, pair by pair, one image at a time."""
    from trainer.evaluation.boxes import paired_iou

    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for truth, found in zip(ground_truth, predictions):
        found = found[found[:, 4] > conf]
        pairs = []
        for d, detection in enumerate(found):
            for g, box in enumerate(truth):
                first = np.array([[*detection[:2], *(detection[2:4] - detection[:2])]])
                second = np.array([[*box[:2], *(box[2:4] - box[:2])]])
                iou = paired_iou(first, second)[0]
                if iou >= iou_threshold:
                    pairs.append((-iou, d, g))
        used_detections, used_truths = set(), set()
        for _, d, g in sorted(pairs):
            if d in used_detections or g in used_truths:
                continue
            used_detections.add(d)
            used_truths.add(g)
            matrix[int(found[d, 5]), int(truth[g, 4])] += 1
        for d in range(len(found)):
            if d not in used_detections:
                matrix[int(found[d, 5]), num_classes] += 1
        for g in range(len(truth)):
            if g not in used_truths:
                matrix[num_classes, int(truth[g, 4])] += 1
    return matrix


def test_confusion_matrix_by_hand() -> None:
    truth = [[*SQUARE, 0], [200.0, 0.0, 300.0, 100.0, 1], [400.0, 0.0, 500.0, 100.0, 1]]
    found = [[*SQUARE, 0.9, 0],  # right
             [200.0, 0.0, 300.0, 100.0, 0.8, 0],  # class 1 called class 0
             [*FAR, 0.7, 1],  # a false alarm
             [400.0, 0.0, 500.0, 100.0, 0.1, 1]]  # below the confidence threshold: a miss
    result = evaluate_one(truth, found, classes=2)
    expected = np.array([[1, 1, 0],
                         [0, 0, 1],
                         [0, 1, 0]])  # rows predicted (c0, c1, background), columns true
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.confusion_labels == ("c0", "c1", BACKGROUND)


def test_confusion_prefers_the_closer_box_over_the_class() -> None:
    truth = [[*SQUARE, 0]]
    found = [[0.0, 0.0, 100.0, 95.0, 0.9, 1], [0.0, 0.0, 100.0, 60.0, 0.9, 0]]  # IoU 0.95 (wrong), 0.6 (right)
    np.testing.assert_array_equal(evaluate_one(truth, found, classes=2).confusion,
                                  [[0, 0, 1], [1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("seed", [0, 1])
def test_confusion_matrix_matches_a_naive_greedy_matcher(seed: int) -> None:
    ground_truth, predictions = noisy_case(seed, images=40)
    for conf, iou_threshold in [(0.25, 0.5), (0.0, 0.3)]:
        expected = naive_confusion(ground_truth, predictions, 6, conf, iou_threshold)
        actual = confusion_matrix(flatten_ground_truth(ground_truth, 6), flatten_predictions(predictions, 6), 6,
                                  conf, iou_threshold)
        np.testing.assert_array_equal(actual, expected)
        # every box lands once: column sums are the true boxes, row sums the confident predictions
        assert actual[:, :6].sum() == sum(len(t) for t in ground_truth)
        assert actual[:6].sum() == sum(int((p[:, 4] > conf).sum()) for p in predictions)


def test_pair_detections_gives_the_pairs_behind_the_confusion_matrix() -> None:
    from trainer.evaluation.confusion import pair_detections

    truth = [[*SQUARE, 0], [200.0, 0.0, 300.0, 100.0, 1], [400.0, 0.0, 500.0, 100.0, 1]]
    found = [[*SQUARE, 0.9, 0], [200.0, 0.0, 300.0, 100.0, 0.8, 0], [*FAR, 0.7, 1],
             [400.0, 0.0, 500.0, 100.0, 0.1, 1]]
    detection, truth_row = pair_detections(flatten_ground_truth([np.array(truth)], 2),
                                           flatten_predictions([np.array(found)], 2), 0.25, 0.5)
    np.testing.assert_array_equal(detection, [0, 1, 2])  # the 0.1 detection is below the threshold
    np.testing.assert_array_equal(truth_row, [0, 1, -1])  # right, wrong class, false alarm; box 2 missed

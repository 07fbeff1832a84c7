"""NMS: exactly classic greedy NMS (checked against a plain Python reference), caps, layout, edge cases."""

from __future__ import annotations

import pytest
import torch

import trainer.model.nms as nms
from trainer.model.nms import non_max_suppression


def reference_nms(prediction: torch.Tensor, conf: float, iou: float, max_detections: int,
                  max_candidates: int | None, multi_label: bool, agnostic: bool) -> list[torch.Tensor]:
    """Textbook greedy NMS, one image and one box at a time, IoU in float64 Python."""
    results = []
    for outputs in prediction.transpose(1, 2).tolist():
        candidates = []  # (score, class, box) in anchor, then class order
        for row in outputs:
            cx, cy, w, h, *scores = row
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if multi_label:
                candidates += [(s, c, box) for c, s in enumerate(scores) if s > conf]
            else:
                best = max(range(len(scores)), key=lambda c: (scores[c], -c))  # first of equal maxima
                if scores[best] > conf:
                    candidates.append((scores[best], best, box))
        candidates.sort(key=lambda candidate: -candidate[0])  # stable: ties keep anchor order
        if max_candidates is not None:
            candidates = candidates[:max_candidates]
        kept = []
        for score, cls, box in candidates:
            if all(not (agnostic or cls == other_cls) or _iou(box, other_box) <= iou
                   for _, other_cls, other_box in kept):
                kept.append((score, cls, box))
        results.append(torch.tensor([[*box, score, cls] for score, cls, box in kept[:max_detections]],
                                    dtype=torch.float32).reshape(-1, 6))
    return results


def _iou(a: tuple, b: tuple) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def random_output(seed: int, batch: int = 3, num_classes: int = 4, anchors: int = 300,
                  clustered: bool = False) -> torch.Tensor:
    """Raw detector output (B, 4 + nc, anchors): pixel cx, cy, w, h and class scores in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    if clustered:  # anchors crowd around a few objects, as a trained detector's do
        objects = torch.rand(batch, 2, 5, generator=generator) * 400
        which = torch.randint(0, 5, (batch, anchors), generator=generator)
        centres = torch.gather(objects, 2, which[:, None, :].expand(-1, 2, -1))
        centres = centres + torch.randn(batch, 2, anchors, generator=generator) * 6
        sizes = 60 + torch.randn(batch, 2, anchors, generator=generator) * 6
    else:
        centres = torch.rand(batch, 2, anchors, generator=generator) * 400
        sizes = torch.rand(batch, 2, anchors, generator=generator) * 80 + 4
    scores = torch.rand(batch, num_classes, anchors, generator=generator) ** 2
    return torch.cat([centres, sizes, scores], dim=1)


def assert_same(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for mine, theirs in zip(actual, expected):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-4)  # boxes: float32 vs float64 arithmetic


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("clustered", [False, True])
def test_matches_greedy_reference(multi_label: bool, agnostic: bool, clustered: bool) -> None:
    prediction = random_output(seed=int(multi_label) + 2 * int(agnostic), clustered=clustered)
    for conf, iou in [(0.05, 0.45), (0.3, 0.7)]:
        actual = non_max_suppression(prediction, conf, iou, multi_label=multi_label, agnostic=agnostic)
        assert_same(actual, reference_nms(prediction, conf, iou, 300, 30_000, multi_label, agnostic))


def test_caps_on_candidates_and_detections() -> None:
    prediction = random_output(seed=5, clustered=True)
    for max_detections, max_candidates in [(20, None), (300, 50), (10, 40)]:
        actual = non_max_suppression(prediction, 0.01, 0.5, max_detections=max_detections,
                                     max_candidates=max_candidates, multi_label=True)
        assert_same(actual, reference_nms(prediction, 0.01, 0.5, max_detections, max_candidates, True, False))
        assert max(len(boxes) for boxes in actual) <= max_detections


def test_chunked_and_padded_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny budgets force large-group row chunks and many padded batches: same answer."""
    prediction = random_output(seed=6, num_classes=2, anchors=400, clustered=True)
    expected = reference_nms(prediction, 0.05, 0.45, 300, None, False, False)
    monkeypatch.setattr(nms, "PAIR_BUDGET", 64)
    monkeypatch.setattr(nms, "_LARGEST_PADDED_GROUP", 8)
    assert_same(non_max_suppression(prediction, 0.05, 0.45, max_candidates=None), expected)


def test_a_suppressed_box_suppresses_nothing() -> None:
    """A chain where each box overlaps only its neighbours: greedy keeps every other one.

    ("Fast NMS", which lets suppressed boxes suppress, would keep the first box only.)
    """
    count = 9
    prediction = torch.zeros(1, 5, count)
    prediction[0, 0] = 50 + 30 * torch.arange(count, dtype=torch.float32)  # shifted by 30% of the width
    prediction[0, 1], prediction[0, 2], prediction[0, 3] = 50, 100, 100
    prediction[0, 4] = torch.linspace(0.9, 0.5, count)  # IoU neighbours 0.54, next-but-one 0.25
    kept = non_max_suppression(prediction, 0.1, 0.45)[0]
    assert kept[:, 0].tolist() == [30 * k for k in range(0, count, 2)]
    assert_same([kept], reference_nms(prediction, 0.1, 0.45, 300, None, False, False))


def test_output_layout_and_order() -> None:
    prediction = random_output(seed=8, clustered=True)
    for boxes in non_max_suppression(prediction, 0.05, 0.5):
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 6
        assert torch.all(boxes[1:, 4] <= boxes[:-1, 4])  # best first
        assert torch.all(boxes[:, 2] >= boxes[:, 0]) and torch.all(boxes[:, 3] >= boxes[:, 1])
        assert torch.all(boxes[:, 5] == boxes[:, 5].round()) and torch.all(boxes[:, 4] > 0.05)


def test_classes_do_not_suppress_each_other_unless_agnostic() -> None:
    prediction = torch.zeros(1, 6, 2)
    prediction[0, :4] = torch.tensor([[50.0, 50.0], [50.0, 50.0], [40.0, 40.0], [40.0, 40.0]])  # same box twice
    prediction[0, 4:] = torch.tensor([[0.9, 0.0], [0.0, 0.8]])  # anchor 0 class 0, anchor 1 class 1
    assert len(non_max_suppression(prediction, 0.25, 0.5)[0]) == 2
    assert non_max_suppression(prediction, 0.25, 0.5, agnostic=True)[0][:, 5].tolist() == [0.0]


def test_nothing_above_the_threshold_and_degenerate_boxes() -> None:
    prediction = random_output(seed=9)
    prediction[:, 4:] = 0.01
    empty = non_max_suppression(prediction, 0.25, 0.45)
    assert [tuple(boxes.shape) for boxes in empty] == [(0, 6)] * 3
    prediction[:, 2:4] = 0  # zero-size boxes overlap nothing: all survive
    prediction[:, 4] = 0.9
    assert [len(boxes) for boxes in non_max_suppression(prediction, 0.25, 0.45)] == [300] * 3


def test_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="anchors"):
        non_max_suppression(torch.zeros(2, 4, 10))

"""Detection loss: batch-target padding, empty targets, monotonicity, class weights, focal term, DFL, overfitting."""

from __future__ import annotations

import math

import pytest
import torch

from dataset_doctor.errors import DoctorError
from trainer.model.boxes import anchor_grid, boxes_to_distances, cxcywh_to_xyxy, iou
from trainer.model.detector import STRIDES, Detector, ModelConfig
from trainer.model.loss import DetectionLoss, LossConfig, distribution_focal_loss, targets_to_padded

NUM_CLASSES = 2
REG_MAX = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def encode_raw(height: int, width: int, box: list[float], cls_logits: torch.Tensor | float = 0.0,
               batch: int = 1) -> list[torch.Tensor]:
    """Raw per-level maps in which every anchor point predicts `box` (xyxy pixels) exactly (DFL two-bin split)."""
    shapes = [(height // s, width // s) for s in STRIDES]
    points, strides = anchor_grid(shapes, STRIDES)
    distances = boxes_to_distances(points, torch.tensor(box) / strides).clamp(0, REG_MAX - 1 - 1e-4)  # (A, 4)
    lower = distances.floor().long()
    upper_mass = distances - lower
    probabilities = torch.zeros(distances.shape[0], 4, REG_MAX)
    probabilities.scatter_(-1, lower[..., None], (1 - upper_mass)[..., None])
    probabilities.scatter_add_(-1, (lower + 1).clamp(max=REG_MAX - 1)[..., None], upper_mass[..., None])
    box_logits = probabilities.clamp(min=1e-9).log().reshape(-1, 4 * REG_MAX)
    cls = torch.as_tensor(cls_logits, dtype=torch.float32).expand(distances.shape[0], NUM_CLASSES)
    flat = torch.cat((box_logits, cls), dim=1).T.expand(batch, -1, -1)  # (B, channels, A)
    maps, start = [], 0
    for h, w in shapes:
        maps.append(flat[:, :, start:start + h * w].reshape(batch, -1, h, w).clone())
        start += h * w
    return maps


GT_BOX = [16.0, 16.0, 48.0, 48.0]  # pixels in a 64 x 64 image
TARGETS = torch.tensor([[0, 1, 0.5, 0.5, 0.5, 0.5]])  # the same box, normalised cxcywh, class 1


def test_targets_to_padded_groups_by_image_and_scales_to_pixels():
    targets = torch.tensor([
        [1, 0, 0.5, 0.5, 0.2, 0.4],
        [0, 1, 0.25, 0.5, 0.5, 1.0],
        [1, 1, 0.1, 0.1, 0.2, 0.2],
    ])
    labels, boxes, mask = targets_to_padded(targets, batch_size=3, image_height=64, image_width=128)
    assert labels.shape == (3, 2) and boxes.shape == (3, 2, 4)
    assert mask.tolist() == [[True, False], [True, True], [False, False]]
    assert labels[1].tolist() == [0, 1] and labels[0, 0].item() == 1
    assert torch.allclose(boxes[0, 0], torch.tensor([0.0, 0.0, 64.0, 64.0]))  # x scaled by W, y by H
    assert torch.allclose(boxes[1, 0], torch.tensor([51.2, 19.2, 76.8, 44.8]))
    labels, boxes, mask = targets_to_padded(torch.zeros(0, 6), batch_size=2, image_height=64, image_width=64)
    assert labels.shape == (2, 0) and boxes.shape == (2, 0, 4) and mask.shape == (2, 0)


@pytest.fixture(scope="module")
def model() -> Detector:
    torch.manual_seed(0)
    return Detector(ModelConfig(scale="n", num_classes=NUM_CLASSES)).train()


def test_finite_with_empty_targets(model):
    criterion = DetectionLoss.for_model(model)
    images = torch.rand(2, 3, 64, 96)
    for targets in (torch.zeros(0, 6), torch.tensor([[1, 0, 0.5, 0.5, 0.3, 0.3]])):  # none; image 0 empty
        model.zero_grad()
        total, items = criterion(model(images), targets)
        assert torch.isfinite(total) and torch.isfinite(items).all()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        if len(targets) == 0:
            assert items[0] == 0 and items[2] == 0 and items[1] > 0  # only background classification


def test_box_and_dfl_terms_shrink_as_the_prediction_moves_onto_the_target():
    criterion = DetectionLoss(NUM_CLASSES)
    results = []
    for shift in (12.0, 8.0, 4.0, 2.0, 0.0):
        box = [GT_BOX[0] + shift, GT_BOX[1], GT_BOX[2] + shift, GT_BOX[3] - shift / 2]
        _, items = criterion(encode_raw(64, 64, box), TARGETS)
        results.append(items)
    box_losses = [r[0].item() for r in results]
    dfl_losses = [r[2].item() for r in results]
    assert box_losses == sorted(box_losses, reverse=True) and len(set(box_losses)) == len(box_losses)
    assert dfl_losses == sorted(dfl_losses, reverse=True) and len(set(dfl_losses)) == len(dfl_losses)
    assert box_losses[-1] == pytest.approx(0.0, abs=1e-4)  # exact box: CIoU = 1


class RecordingAssigner:
    def __init__(self, assigner):
        self.assigner, self.last = assigner, None

    def __call__(self, *args):
        self.last = self.assigner(*args)
        return self.last


def test_classification_term_shrinks_as_scores_move_toward_targets():
    criterion = DetectionLoss(NUM_CLASSES)
    criterion.assigner = recorder = RecordingAssigner(criterion.assigner)
    criterion(encode_raw(64, 64, GT_BOX), TARGETS)
    target = recorder.last.scores[0]  # (A, C) soft targets, 1 on the positives' class here (perfect boxes)
    first_positives = recorder.last.foreground.clone()
    assert target.max() == pytest.approx(1.0, abs=1e-5)
    losses = []
    for confidence in (0.0, 1.0, 2.0, 4.0):  # logits move toward +inf where the target is 1, -inf elsewhere
        logits = confidence * (2 * target - 1)
        _, items = criterion(encode_raw(64, 64, GT_BOX, cls_logits=logits), TARGETS)
        assert torch.equal(recorder.last.foreground, first_positives)  # same positives: only the scores moved
        losses.append(items[1].item())
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)


def test_classification_loss_matches_the_weighted_bce_formula():
    weights = [0.5, 3.0]
    criterion = DetectionLoss(NUM_CLASSES, config=LossConfig(class_weights=weights))
    logits = torch.tensor([[[2.0, -1.0], [0.3, 0.0]]])
    targets = torch.tensor([[[0.8, 0.0], [0.0, 1.0]]])
    p = torch.sigmoid(logits)
    expected = -torch.tensor(weights) * (targets * p.log() + (1 - targets) * (1 - p).log())
    assert torch.allclose(criterion.classification_loss(logits, targets), expected, atol=1e-6)


def test_class_weight_scales_its_class_contribution_exactly(model):
    """L_cls is linear in the weight vector: weighting a class by 3 triples its share, positives and negatives."""
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 0, 0.3, 0.3, 0.4, 0.4], [0, 1, 0.7, 0.6, 0.5, 0.6], [1, 1, 0.5, 0.5, 0.8, 0.8]])
    with torch.no_grad():
        outputs = model(images)

    def items(weights):
        return DetectionLoss.for_model(model, LossConfig(class_weights=weights))(outputs, targets)[1]

    only_class0, only_class1 = items([1.0, 0.0]), items([0.0, 1.0])
    unweighted, class0_up = items([1.0, 1.0]), items([3.0, 1.0])
    assert only_class0[1] > 0 and only_class1[1] > 0
    assert unweighted[1].item() == pytest.approx((only_class0[1] + only_class1[1]).item(), rel=1e-5)
    # class 0's contribution (total minus class 1's share) grows by exactly the factor 3
    contribution_up = (class0_up[1] - only_class1[1]).item()
    contribution_base = (unweighted[1] - only_class1[1]).item()
    assert contribution_up / contribution_base == pytest.approx(3.0, rel=1e-4)
    assert class0_up[1] > unweighted[1]
    # weights touch classification only: same assignment, same box and DFL terms
    assert torch.equal(class0_up[[0, 2]], unweighted[[0, 2]])


def test_bad_class_weights_are_a_user_error():
    with pytest.raises(DoctorError, match="3 entries for 2 classes"):
        DetectionLoss(NUM_CLASSES, config=LossConfig(class_weights=[1.0, 2.0, 3.0]))
    with pytest.raises(DoctorError, match="non-negative"):
        DetectionLoss(NUM_CLASSES, config=LossConfig(class_weights=[1.0, -2.0]))


def test_class_ids_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="class ids"):
        DetectionLoss(NUM_CLASSES)(encode_raw(64, 64, GT_BOX), torch.tensor([[0, 2, 0.5, 0.5, 0.2, 0.2]]))


def test_focal_term_down_weights_easy_examples():
    plain = DetectionLoss(NUM_CLASSES)
    focal = DetectionLoss(NUM_CLASSES, config=LossConfig(focal_gamma=2.0))
    targets = torch.tensor([[[1.0, 0.0]]])
    easy = torch.tensor([[[4.0, -4.0]]])  # p = 0.982 on the positive, 0.018 on the negative
    hard = torch.tensor([[[-1.0, 1.0]]])  # p = 0.269 on the positive, 0.731 on the negative
    for logits in (easy, hard):
        p = torch.sigmoid(logits)
        p_t = torch.where(targets == 1, p, 1 - p)
        ratio = focal.classification_loss(logits, targets) / plain.classification_loss(logits, targets)
        assert torch.allclose(ratio, (1 - p_t) ** 2, atol=1e-6)  # exactly Lin et al.'s (1 - p_t)^gamma
    easy_ratio = (focal.classification_loss(easy, targets) / plain.classification_loss(easy, targets)).max()
    hard_ratio = (focal.classification_loss(hard, targets) / plain.classification_loss(hard, targets)).min()
    assert easy_ratio < 0.001 < 0.5 < hard_ratio
    # on a whole (mostly easy background) prediction map the focal loss is lower
    raw = encode_raw(64, 64, GT_BOX, cls_logits=-3.0)
    assert focal(raw, TARGETS)[1][1] < plain(raw, TARGETS)[1][1]


def test_distribution_focal_loss_hand_computed():
    # target 3.3: mass 0.7 on bin 3 and 0.3 on bin 4; a prediction with exactly that distribution scores
    # -(0.7 log 0.7 + 0.3 log 0.3), any other distribution more.
    target = torch.full((1, 4), 3.3)
    exact = torch.full((1, 4, REG_MAX), 1e-12)
    exact[..., 3], exact[..., 4] = 0.7, 0.3
    expected = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    assert distribution_focal_loss(exact.log(), target).item() == pytest.approx(expected, abs=1e-5)
    peaked = torch.zeros(1, 4, REG_MAX)
    peaked[..., 3] = 20.0
    assert distribution_focal_loss(peaked, target).item() > expected
    assert distribution_focal_loss(torch.zeros(1, 4, REG_MAX), target).item() == pytest.approx(math.log(REG_MAX))


def test_rectangular_and_multiscale_batches(model):
    criterion = DetectionLoss.for_model(model)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.5, 0.25]])
    for height, width in ((96, 64), (64, 160), (128, 128)):
        total, items = criterion(model(torch.rand(1, 3, height, width)), targets)
        assert torch.isfinite(total) and items[0] > 0


def test_loss_is_float32_under_autocast(model):
    """With AMP the forward runs in low precision; the loss must still be computed (and returned) in float32."""
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.4, 0.4], [1, 0, 0.3, 0.6, 0.2, 0.5]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(images)
        assert outputs[0].dtype == torch.bfloat16
        total, items = DetectionLoss.for_model(model)(outputs, targets)
    assert total.dtype == torch.float32 and torch.isfinite(total) and torch.isfinite(items).all()
    total.backward()


def test_total_is_gain_weighted_sum_times_batch(model):
    config = LossConfig(box_gain=2.0, cls_gain=3.0, dfl_gain=5.0)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        total, items = DetectionLoss.for_model(model, config)(model(images), torch.tensor([[2, 1, .5, .5, .4, .4]]))
    assert total.item() == pytest.approx(3 * (2 * items[0] + 3 * items[1] + 5 * items[2]).item(), rel=1e-5)


def synthetic_batch(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Two square images with flat coloured rectangles on a dark background, and their boxes."""
    images = torch.full((2, 3, size, size), 0.1)
    rows = [(0, 0, 22, 15, 67, 45), (1, 1, 7, 52, 37, 90), (1, 0, 60, 7, 90, 30)]  # image, class, x1, y1, x2, y2
    colours = {0: torch.tensor([0.9, 0.2, 0.2]), 1: torch.tensor([0.2, 0.3, 0.9])}
    targets = []
    for image, cls, x1, y1, x2, y2 in rows:
        images[image, :, y1:y2, x1:x2] = colours[cls][:, None, None]
        targets.append([image, cls, (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size])
    return images, torch.tensor(targets)


def test_tiny_overfit_drives_the_loss_down():
    torch.manual_seed(0)
    model = Detector(ModelConfig(scale="n", num_classes=NUM_CLASSES)).train()
    criterion = DetectionLoss.for_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    images, targets = synthetic_batch()
    losses = []
    for _ in range(30):
        total, _ = criterion(model(images), targets)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert all(math.isfinite(loss) for loss in losses)
    assert min(losses[-5:]) < 0.3 * losses[0]
    # the best-scoring prediction for each gt's class, in that gt's image, lands on the gt
    with torch.no_grad():
        decoded = model.decode(model(images))  # train-mode BatchNorm: the statistics the loss was minimised with
    for image, cls, *box in targets.tolist():
        best = decoded[int(image), 4 + int(cls)].argmax()
        gt = cxcywh_to_xyxy(torch.tensor(box) * images.shape[-1])
        assert iou(cxcywh_to_xyxy(decoded[int(image), :4, best]), gt).item() > 0.5

"""Instance copy-paste: pixels and labels agree, occlusion is bounded, dense scenes stay consistent, sizes follow
the class's train distribution, and a seed fixes everything."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.stats import ks_2samp

from dataset_doctor.rebalance.paste import (
    PasteOptions,
    PasteSource,
    coverage,
    crop_box,
    paste_instance,
)

PLAIN = PasteOptions(flip=False, jitter=False)


def _gradient(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth picture: resizing it changes pixels only a little, so a resized crop can be compared."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _source(box: tuple[float, float, float, float] = (40.0, 30.0, 80.0, 70.0), extra: list | None = None,
            size: tuple[int, int] = (160, 120)) -> PasteSource:
    boxes = np.array([box] + (extra or []), dtype=np.float64)
    return PasteSource(_gradient(*size, seed=1), boxes, np.array([1] + [0] * len(extra or []), dtype=np.int64), 0)


@pytest.mark.parametrize("flip", [False, True])
def test_pasted_box_is_inside_and_shows_the_transformed_source_crop(flip: bool) -> None:
    host = _gradient(200, 150, seed=2)
    source = _source()
    pool = np.full(5, (40 * 40) / (200 * 150))  # the same size as the source: scale 1
    result = paste_instance(host, np.zeros((0, 4)), np.zeros(0, np.int64), source, pool,
                            np.random.default_rng(3), PasteOptions(flip=flip, jitter=False))
    x1, y1, x2, y2 = result.pasted[0]
    assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 150
    assert result.scale == pytest.approx(1.0)
    assert result.flipped is flip
    # Away from the feathered edge the host shows the patch exactly.
    px1, py1, px2, py2 = result.patch_box
    f = result.feather
    np.testing.assert_array_equal(result.image[py1 + f:py2 - f, px1 + f:px2 - f], result.patch[f:-f, f:-f])
    # And the patch, read at the new line, is the source crop at the source line (flipped when flipped).
    shown = result.image[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)].astype(np.int16)
    expected = source.image[30:70, 40:80]
    expected = (expected[:, ::-1] if flip else expected)[:shown.shape[0], :shown.shape[1]].astype(np.int16)
    assert np.abs(shown - expected).mean() < 2.0
    # Outside the patch the host is untouched.
    mask = np.ones(host.shape[:2], bool)
    mask[py1:py2, px1:px2] = False
    np.testing.assert_array_equal(result.image[mask], host[mask])


def test_scaled_paste_matches_the_resized_crop() -> None:
    host = _gradient(240, 180, seed=4)
    source = _source()
    pool = np.full(3, (60 * 60) / (240 * 180))  # scale 1.5
    result = paste_instance(host, np.zeros((0, 4)), np.zeros(0, np.int64), source, pool,
                            np.random.default_rng(5), PLAIN)
    x1, y1, x2, y2 = result.pasted[0]
    assert result.scale == pytest.approx(1.5)
    assert (x2 - x1) == pytest.approx(60, abs=1.5) and (y2 - y1) == pytest.approx(60, abs=1.5)
    shown = result.image[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)]
    expected = cv2.resize(source.image[30:70, 40:80], (shown.shape[1], shown.shape[0]))
    assert np.abs(shown.astype(np.int16) - expected.astype(np.int16)).mean() < 4.0


def test_sparse_host_boxes_are_hidden_at_most_by_the_bound() -> None:
    host = _gradient(200, 150, seed=6)
    host_boxes = np.array([[10, 10, 60, 50], [120, 80, 190, 140], [70, 20, 110, 60]], dtype=np.float64)
    source = _source()
    pool = np.full(4, (30 * 30) / (200 * 150))
    dense = 0
    for seed in range(40):
        result = paste_instance(host, host_boxes, np.zeros(3, np.int64), source, pool,
                                np.random.default_rng(seed), PLAIN)
        if result.dense:
            dense += 1
            continue
        assert coverage(host_boxes, result.patch_box).max() <= PLAIN.max_occlusion + 1e-9
        np.testing.assert_array_equal(result.boxes[:3], host_boxes)  # sparse: host labels untouched
    assert dense == 0  # there is room: every paste found a place within the bound


def test_dense_scene_labels_stay_consistent() -> None:
    """Every picture full of class 0: the patch carries its own class-0 boxes, hidden host boxes go."""
    rng = np.random.default_rng(0)
    grid = [(x, y, x + 20, y + 20) for x in range(0, 200, 20) for y in range(0, 160, 20)]
    host_boxes = np.array(grid, dtype=np.float64)
    host = _gradient(200, 160, seed=7)
    # crop 36..84 x 26..74: the first is 70% inside (carried, clipped), the others 33% and 0% (not carried)
    neighbours = [[70.0, 50.0, 90.0, 70.0], [30.0, 28.0, 39.0, 48.0], [0.0, 0.0, 20.0, 20.0]]
    source = _source(box=(40.0, 30.0, 80.0, 70.0), extra=neighbours)
    options = PasteOptions(flip=True, jitter=True)
    for seed in range(10):
        result = paste_instance(host, host_boxes, np.zeros(len(grid), np.int64), source,
                                np.full(3, 1600 / (200 * 160)), np.random.default_rng(seed), options)
        assert result.dense
        covered = coverage(host_boxes, result.patch_box)
        # no hidden host box stays labelled, no visible one is dropped
        np.testing.assert_array_equal(result.host_kept, covered <= 1 - options.min_visibility)
        host_out = result.boxes[:result.host_kept.sum()]
        assert (coverage(host_out, result.patch_box) < 1 - options.min_visibility + 1e-9).all()
        # the patch's own labels: the instance, then source neighbours mostly inside the crop (clipped to it)
        assert result.pasted_classes[0] == 1
        assert list(result.pasted_classes) == [1, 0]
        width = result.pasted[1, 2] - result.pasted[1, 0]
        assert width == pytest.approx(14, abs=0.01)  # clipped to the crop at scale 1
        px1, py1, px2, py2 = result.patch_box
        assert (result.pasted[:, [0, 2]] >= px1 - 1e-6).all() and (result.pasted[:, [0, 2]] <= px2 + 1e-6).all()
        assert (result.pasted[:, [1, 3]] >= py1 - 1e-6).all() and (result.pasted[:, [1, 3]] <= py2 + 1e-6).all()
        assert ((result.boxes >= -1e-9) & (result.boxes <= [200, 160, 200, 160])).all()
        rng.random()


def test_neighbour_mostly_outside_the_crop_is_not_carried() -> None:
    source = _source(extra=[[78.0, 30.0, 120.0, 70.0]])  # only 2 px + margin of it inside the crop
    x1, _, x2, _ = crop_box(source)
    assert x2 - 78 < 0.4 * 42
    result = paste_instance(_gradient(200, 150, 8), np.zeros((0, 4)), np.zeros(0, np.int64), source,
                            np.full(2, 1600 / 30000), np.random.default_rng(0), PLAIN)
    assert list(result.pasted_classes) == [1]


def test_pasted_sizes_follow_the_class_distribution() -> None:
    rng = np.random.default_rng(11)
    train_areas = np.exp(rng.normal(np.log(0.02), 0.5, size=400))  # normalised areas of the class in train
    host = _gradient(256, 192, seed=9)
    source = _source(size=(256, 192))
    pasted = []
    for seed in range(300):
        result = paste_instance(host, np.zeros((0, 4)), np.zeros(0, np.int64), source, train_areas,
                                np.random.default_rng(seed), PLAIN)
        x1, y1, x2, y2 = result.pasted[0]
        pasted.append((x2 - x1) * (y2 - y1) / (256 * 192))
    assert ks_2samp(np.log(pasted), np.log(train_areas)).pvalue > 0.01
    # a fixed scale (no draw) would be far off
    assert ks_2samp(np.full(300, 1600 / (256 * 192)), train_areas).pvalue < 1e-6


def test_same_seed_same_paste_other_seed_other_paste() -> None:
    host = _gradient(200, 150, seed=10)
    source = _source()
    pool = np.linspace(0.01, 0.06, 20)
    first, second, other = (paste_instance(host, np.zeros((0, 4)), np.zeros(0, np.int64), source, pool,
                                           np.random.default_rng(seed), PasteOptions()) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.boxes, second.boxes)
    assert not np.array_equal(first.image, other.image)


def test_seamless_blend_keeps_the_labels() -> None:
    host = _gradient(200, 150, seed=12)
    result = paste_instance(host, np.zeros((0, 4)), np.zeros(0, np.int64), _source(), np.full(2, 1600 / 30000),
                            np.random.default_rng(0), PasteOptions(blend="seamless"))
    assert result.image.shape == host.shape and not np.array_equal(result.image, host)
    assert len(result.pasted) == 1

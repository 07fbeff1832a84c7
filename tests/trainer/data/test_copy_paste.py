"""`doctor train --copy-paste P`: the rebalance paste as an online augmentation, rare classes favoured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from tests.trainer.painted import COLOURS, colour_mask, painted_image, write_painted, yolo_line
from trainer.data.config import AugmentConfig
from trainer.data.dataset import PasteTable, build_dataset
from trainer.data.sampler import SampleKey

SIZE = 96


def _dataset(make_dataset):
    """host.png: one red class-0 box; src0..src2.png: one green class-1 box each (painted, lossless)."""
    images = {"host.png": (0, (8, 8, 30, 30))} | {f"src{k}.png": (1, (40 + 4 * k, 40, 70 + 4 * k, 72))
                                                   for k in range(3)}
    spec = {name: (yolo_line(cls, box, SIZE, SIZE) + "\n", (SIZE, SIZE)) for name, (cls, box) in images.items()}
    yaml_path = make_dataset({"train": spec, "val": spec}, names=["red", "green"])
    for name, (cls, box) in images.items():
        for folder in ("train", "val"):
            write_painted(yaml_path.parent / "images" / folder / name,
                          painted_image(SIZE, SIZE, [box], [COLOURS[cls]]))
    return build_index(yaml_path, progress=False)


def test_copy_paste_adds_an_instance_from_another_image_on_its_pixels(make_dataset) -> None:
    index = _dataset(make_dataset)
    augment = replace(AugmentConfig.off(), copy_paste=1.0)
    dataset = build_dataset(index, "train", SIZE, augment, seed=1)
    host = [Path(n).name for n in dataset.images.names].index("host.png")
    plain = build_dataset(index, "train", SIZE, AugmentConfig.off(), seed=1)[SampleKey(host, 0, 0)]
    assert plain.labels[:, 0].tolist() == [0]
    for draw in range(6):
        sample = dataset[SampleKey(host, 0, draw)]
        classes = sample.labels[:, 0].astype(int).tolist()
        assert classes[0] == 0 and 1 in classes[1:]  # the host's red box stays, a green one was pasted
        for cls, cx, cy, w, h in sample.labels:
            x1, y1, x2, y2 = (np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * SIZE).round().astype(int)
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            inside = sample.image[y1 + 1:y2 - 1, x1 + 1:x2 - 1]
            # jitter moves the colour a little; the pasted pixels are still the pasted object's colour
            assert colour_mask(inside, COLOURS[int(cls)], tolerance=70).mean() > 0.9
    again = dataset[SampleKey(host, 0, 3)]
    np.testing.assert_array_equal(again.image, dataset[SampleKey(host, 0, 3)].image)


def test_copy_paste_zero_changes_nothing(make_dataset) -> None:
    """At 0 the paste step draws no random number, so a paste table changes nothing; the default (0.5) does."""
    index = _dataset(make_dataset)
    augment = replace(AugmentConfig(), mosaic=0.5, copy_paste=0.0)
    with_zero = build_dataset(index, "train", SIZE, augment, seed=2)
    with_table = build_dataset(index, "train", SIZE, augment, seed=2)
    with_table.set_paste_weights(None)
    default = build_dataset(index, "train", SIZE, replace(augment, copy_paste=AugmentConfig().copy_paste), seed=2)
    assert AugmentConfig().copy_paste == 0.5 and AugmentConfig.off().copy_paste == 0.0
    changed = 0
    for draw in range(8):
        key = SampleKey(draw % 4, 0, draw)
        a, b, c = with_zero[key], with_table[key], default[key]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        changed += len(c.labels) != len(a.labels) or not np.array_equal(c.image, a.image)
    assert changed > 0


def test_rare_classes_are_drawn_by_class_weight() -> None:
    labels = [np.array([[0, 0.5, 0.5, 0.1, 0.1]] * 9, np.float32), np.array([[1, 0.5, 0.5, 0.2, 0.2]], np.float32)]
    table = PasteTable.from_labels(labels, [1.0, 9.0])  # inverse frequency: 9 common boxes, 1 rare
    rng = np.random.default_rng(0)
    drawn = [table.draw(rng, exclude=-1)[0] for _ in range(2000)]
    assert np.mean(np.array(drawn) == 1) == pytest.approx(0.5, abs=0.05)  # each class half the time
    uniform = PasteTable.from_labels(labels, None)
    drawn = [uniform.draw(rng, exclude=-1)[0] for _ in range(2000)]
    assert np.mean(np.array(drawn) == 1) == pytest.approx(0.1, abs=0.03)
    assert table.draw(rng, exclude=0)[0] == 1  # never its own image
    np.testing.assert_allclose(table.pools[1], [0.04])


def test_copy_paste_is_a_probability() -> None:
    with pytest.raises(DoctorError, match="copy_paste"):
        replace(AugmentConfig(), copy_paste=1.5).checked()


def test_train_loader_draws_pastes_with_the_sampling_weights(make_dataset) -> None:
    from trainer.data.config import DataConfig
    from trainer.data.loader import build_train_loader

    index = _dataset(make_dataset)
    augment = replace(AugmentConfig.off(), copy_paste=1.0)
    loader = build_train_loader(index, DataConfig(imgsz=SIZE, workers=0), augment, batch_size=4, epochs=1,
                                class_weights=[3.0, 1.0])
    table = loader.dataset.paste_table
    host = [Path(n).name for n in loader.dataset.images.names].index("host.png")
    assert table.probabilities[table.image_of == host].item() == pytest.approx(0.5)  # 3 / (3 + 1 + 1 + 1)
    batch = next(iter(loader))
    assert len(batch.targets) > 4  # every image got a paste on top of its own box

"""The dataset and loaders: what is skipped (with one warning each), backgrounds, the batch contract,
evaluation mode's exact inverse mapping, close_mosaic, RAM cache, determinism, batch drawings."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from tests.trainer.painted import COLOURS, colour_box, painted_image, write_painted, yolo_line
from trainer.data.collate import Collate, multi_scale_sizes
from trainer.data.config import AugmentConfig, DataConfig, round_imgsz
from trainer.data.dataset import ImageSet, YoloDataset, build_dataset, estimate_cache_bytes, select_images
from trainer.data.loader import build_eval_loader, build_train_loader, make_eval_loader, set_loader_epoch
from trainer.data.plot_batch import save_batches
from trainer.data.sampler import SampleKey, UniformSampler

ERROR_LINE_CHECKS = {"malformed-line", "class-out-of-range", "out-of-bounds", "degenerate-box"}


class Warnings(list):
    def __call__(self, message: str) -> None:
        self.append(message)


def _painted_dataset(make_dataset, images: dict[str, tuple[int, int, list[tuple[int, int, int, int]]]],
                     split: str = "train", names=("a", "b", "c", "d", "e", "f", "g", "h")) -> Path:
    """A dataset whose images are painted rectangles (PNG) labelled with their exact boxes, class = colour."""
    spec = {name: ("\n".join(yolo_line(k, box, w, h) for k, box in enumerate(boxes)) + "\n", (w, h))
            for name, (w, h, boxes) in images.items()}
    yaml_path = make_dataset({split: spec, **({"val": spec} if split == "train" else {})}, names=list(names))
    for name, (w, h, boxes) in images.items():
        for folder in {split, "val"}:
            write_painted(yaml_path.parent / "images" / folder / name, painted_image(w, h, boxes))
    return yaml_path


def test_skips_unusable_lines_and_images_with_one_warning_each(make_dataset) -> None:
    yaml_path = make_dataset({"train": {
        "good.jpg": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
        "partly.jpg": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1\n0 1.2 0.5 0.2 0.2\n",
        "all_bad.jpg": "9 0.5 0.5 0.2 0.2\n0 0.5 0.5 0 0.1\n",
        "no_label.jpg": None,
        "empty.jpg": "",
        "polygon.jpg": "1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5\n",
    }, "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    train_images = yaml_path.parent / "images" / "train"
    (train_images / "corrupt.jpg").write_bytes(b"not an image at all")
    (train_images / "unlabelled_dir.jpg").write_bytes((train_images / "good.jpg").read_bytes()[:-1] + b"\xd9")
    (yaml_path.parent / "labels" / "train" / "unlabelled_dir.txt").mkdir()  # an unreadable label file
    index = build_index(yaml_path, progress=False)
    warnings = Warnings()
    images = select_images(index, "train", warnings)

    kept = dict(zip(images.names, images.labels))
    assert set(kept) == {"images/train/good.jpg", "images/train/partly.jpg", "images/train/no_label.jpg",
                         "images/train/empty.jpg", "images/train/polygon.jpg"}
    assert len(kept["images/train/good.jpg"]) == 2
    np.testing.assert_allclose(kept["images/train/partly.jpg"], [[0, 0.5, 0.5, 0.2, 0.2]])
    np.testing.assert_allclose(kept["images/train/polygon.jpg"], [[1, 0.25, 0.3, 0.3, 0.4]], atol=1e-6)
    assert len(kept["images/train/no_label.jpg"]) == 0 and len(kept["images/train/empty.jpg"]) == 0
    assert images.backgrounds == 2

    # One warning per skipped image or per image's group of skipped lines, each naming the file.
    assert len(warnings) == 4, warnings
    partly = next(w for w in warnings if "partly" in w)
    assert "3 label line(s)" in partly and "2 (class-out-of-range)" in partly and "3 (malformed-line)" in partly \
        and "4 (out-of-bounds)" in partly
    assert any("all_bad.jpg" in w and "every label line" in w for w in warnings)
    assert any("corrupt.jpg" in w and "unreadable" in w for w in warnings)
    assert any("unlabelled_dir" in w and "label file" in w for w in warnings)
    assert images.skipped_images == 3 and images.skipped_lines == 5


def test_sample_dataset_skips_exactly_the_audit_errors(sample_yaml: Path) -> None:
    manifest = json.loads((sample_yaml.parent / "manifest.json").read_text())
    index = build_index(sample_yaml, progress=False)
    warnings = Warnings()
    images = select_images(index, "train", warnings)

    corrupt = {d["image"] for d in manifest["defects"] if d["check"] == "corrupt-image" and d["split"] == "train"}
    bad_lines = {d["label"] for d in manifest["defects"] if d["check"] in ERROR_LINE_CHECKS and d["split"] == "train"}
    assert corrupt and bad_lines
    assert len(warnings) == len(corrupt) + len(bad_lines)
    assert {w.split(":")[0] for w in warnings} == corrupt | bad_lines
    assert not corrupt & set(images.names)
    # Backgrounds (empty or missing label files) are kept, with no boxes.
    train = index.images_in("train")
    with_lines = set(index.boxes_in("train")["image"]) | set(
        index.problems.loc[index.problems["line"].notna(), "image"])
    backgrounds = {name for name, readable in zip(train["image"], train["readable"])
                   if readable and name not in with_lines}
    assert len(backgrounds) >= 3
    kept = dict(zip(images.names, images.labels))
    assert all(name in kept and len(kept[name]) == 0 for name in backgrounds)
    assert images.backgrounds == len(backgrounds)
    # Every other kept image has exactly its usable boxes.
    assert sum(len(labels) for labels in images.labels) == len(index.usable_boxes("train"))


def test_eval_mode_letterboxes_deterministically_and_maps_back_exactly(make_dataset) -> None:
    yaml_path = _painted_dataset(make_dataset, {
        "wide.png": (300, 170, [(10, 20, 60, 90), (200, 100, 290, 160)]),
        "tall.png": (123, 311, [(5, 5, 50, 100), (60, 200, 120, 300), (30, 120, 90, 180)]),
        "square.png": (64, 64, [(0, 0, 20, 20), (40, 44, 64, 64)]),
    })
    index = build_index(yaml_path, progress=False)
    loader = build_eval_loader(index, "val", DataConfig(imgsz=160, workers=0), batch_size=2)
    dataset = loader.dataset
    assert not dataset.training
    names = []
    for _ in range(2):
        batches = list(loader)
        names.append([dataset.images.names[i] for b in batches for i in b.indices.tolist()])
    assert names[0] == names[1] == sorted(names[0])  # index order, every time
    first, second = list(loader), list(loader)
    for a, b in zip(first, second):
        assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)

    for batch in first:
        assert batch.images.shape[-2:] == (160, 160)
        for row, dataset_index in enumerate(batch.indices.tolist()):
            name = dataset.images.names[dataset_index]
            width, height, boxes = {"images/val/wide.png": (300, 170, None), "images/val/tall.png": (123, 311, None),
                                    "images/val/square.png": (64, 64, None)}[name]
            assert batch.original_sizes[row].tolist() == [height, width]
            targets = batch.targets[batch.targets[:, 0] == row]
            cx, cy, w, h = (targets[:, 2:6].double() * 160).T
            input_boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
            original = batch.to_original_pixels(input_boxes, row)
            labels = dataset.images.labels[dataset_index]
            expected = np.stack([(labels[:, 1] - labels[:, 3] / 2) * width, (labels[:, 2] - labels[:, 4] / 2) * height,
                                 (labels[:, 1] + labels[:, 3] / 2) * width, (labels[:, 2] + labels[:, 4] / 2) * height],
                                axis=1)
            np.testing.assert_allclose(original.numpy(), expected, atol=2e-3)  # float32 targets: ~1e-5 relative
            # ... and the painted objects are where the targets say.
            image = (batch.images[row].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            for class_id, box in zip(targets[:, 1].long().tolist(), input_boxes.numpy()):
                np.testing.assert_allclose(colour_box(image, COLOURS[class_id]), box, atol=1.0)


def test_training_samples_keep_boxes_on_objects_with_mosaic_and_affine(make_dataset) -> None:
    yaml_path = _painted_dataset(make_dataset, {
        f"im{k}.png": (160 + 20 * k, 120 + 15 * k, [(10 + k, 10, 50 + k, 60), (90, 70 + k, 140, 110 + k)])
        for k in range(4)})
    index = build_index(yaml_path, progress=False)
    augment = replace(AugmentConfig.off(), mosaic=1.0, translate=0.1, scale=0.3, fliplr=0.5)
    dataset = build_dataset(index, "train", 128, augment, seed=3)
    mosaics = 0
    for draw in range(24):
        sample = dataset[SampleKey(draw % 4, 0, draw)]
        assert sample.image.shape == (128, 128, 3) and sample.labels.dtype == np.float32
        assert ((sample.labels[:, 1:] >= 0) & (sample.labels[:, 1:] <= 1)).all()
        mosaics += len(sample.labels) > 2
        for class_id, cx, cy, w, h in sample.labels:
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * 128
            found = colour_box(sample.image, COLOURS[int(class_id)])
            # Two objects share a colour in a mosaic: the found box covers all of that colour, so check inclusion.
            assert found is not None
            assert (box[:2] >= found[:2] - 1.5).all() and (box[2:] <= found[2:] + 1.5).all()
    assert mosaics > 0


def test_close_mosaic_switch_reaches_persistent_workers(make_dataset) -> None:
    yaml_path = _painted_dataset(make_dataset, {f"im{k}.png": (64, 64, [(8, 8, 40, 40)]) for k in range(6)})
    index = build_index(yaml_path, progress=False)
    augment = replace(AugmentConfig.off(), mosaic=1.0, close_mosaic=2)
    data = DataConfig(imgsz=64, workers=2)
    loader = build_train_loader(index, data, augment, batch_size=3, epochs=4, seed=0)
    dataset = loader.dataset
    assert [dataset.mosaic_active(e) for e in range(4)] == [True, True, False, False]
    assert loader.persistent_workers and loader.num_workers == 2
    boxes_per_epoch = []
    for epoch in range(4):
        set_loader_epoch(loader, epoch)
        boxes_per_epoch.append(max(int((b.targets[:, 0] == i).sum()) for b in loader for i in range(len(b))))
    # One box per image: more than one in a sample means a mosaic.
    assert boxes_per_epoch[0] > 1 and boxes_per_epoch[1] > 1
    assert boxes_per_epoch[2] == 1 and boxes_per_epoch[3] == 1
    # The plain-int path follows set_epoch.
    dataset.set_epoch(3)
    assert all(len(dataset[i].labels) == 1 for i in range(6))
    # A run shorter than close_mosaic never uses mosaic.
    short = YoloDataset(dataset.images, 64, augment, epochs=2)
    assert not short.mosaic_active(0)


def test_collate_builds_the_batch_contract(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    loader = build_train_loader(index, DataConfig(imgsz=96, workers=0), AugmentConfig(), batch_size=8, epochs=3)
    batch = next(iter(loader))
    assert batch.images.dtype == torch.float32 and batch.images.shape == (8, 3, 96, 96)
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.targets.dtype == torch.float32 and batch.targets.shape[1] == 6
    assert len(batch.targets) > 0
    assert set(batch.targets[:, 0].long().tolist()) <= set(range(8))
    assert (batch.targets[:, 0] == batch.targets[:, 0].sort().values).all()  # grouped by image, in order
    assert ((batch.targets[:, 1] >= 0) & (batch.targets[:, 1] < index.nc)).all()
    assert ((batch.targets[:, 2:] >= 0) & (batch.targets[:, 2:] <= 1)).all()
    assert (batch.targets[:, 4:] > 0).all()
    # RGB: the dataset decodes BGR files into RGB.
    sample = loader.dataset[SampleKey(0, 0, 0)]
    first = Collate(96)([sample])
    np.testing.assert_array_equal((first.images[0].permute(1, 2, 0) * 255).round().byte().numpy(), sample.image)


def test_read_image_is_rgb(make_dataset) -> None:
    yaml_path = make_dataset({"train": {"red.png": ""}, "val": {"v.png": ""}})
    path = yaml_path.parent / "images" / "train" / "red.png"
    cv2.imwrite(str(path), np.full((20, 40, 3), (0, 0, 255), dtype=np.uint8))  # BGR red, 40 wide, 20 high
    index = build_index(yaml_path, progress=False)
    dataset = build_dataset(index, "train", 64)
    image = dataset[0].image
    assert tuple(image[32, 32]) == (255, 0, 0)  # RGB red
    assert tuple(image[0, 0]) == (114, 114, 114)  # letterbox padding above the 64 x 32 resized image
    assert dataset[0].pad == (0, 16) and dataset[0].ratio == (1.6, 1.6)


def test_multi_scale_sizes_and_determinism() -> None:
    assert multi_scale_sizes(640) == list(range(320, 961, 32))
    assert multi_scale_sizes(320) == list(range(160, 481, 32))
    assert multi_scale_sizes(32) == [32]
    collate = Collate(128, multi_scale=True, seed=1, batch_stride=4)
    sides = {collate.scale_for(0, draw) for draw in range(0, 400, 4)}
    assert sides <= set(multi_scale_sizes(128)) and len(sides) > 3
    # Same step, same side: every rank (first draws 0..3 of step 0) resizes to the same size.
    assert len({collate.scale_for(5, draw) for draw in range(8, 12)}) == 1
    image = np.full((128, 128, 3), 200, dtype=np.uint8)
    from trainer.data.collate import Sample

    samples = [Sample(image, np.array([[1, 0.5, 0.5, 0.25, 0.5]], dtype=np.float32), 0, 0, 0, draw, (64, 128),
                      (1.0, 1.0), (0.0, 32.0)) for draw in range(4)]
    for step in range(6):
        moved = [s._replace(draw=s.draw + 4 * step) for s in samples]
        batch = collate(moved)
        side = collate.scale_for(0, 4 * step)
        assert batch.images.shape == (4, 3, side, side) and side % 32 == 0
        torch.testing.assert_close(batch.targets[:, 2:], torch.tensor([[0.5, 0.5, 0.25, 0.5]] * 4))
        assert batch.pads[0, 1].item() == pytest.approx(32.0 * side / 128)


def test_round_imgsz_warns() -> None:
    warnings = Warnings()
    assert round_imgsz(640, warnings) == 640 and not warnings
    assert round_imgsz(650, warnings) == 672 and "672" in warnings[0]
    with pytest.raises(DoctorError):
        round_imgsz(16)
    assert DataConfig(imgsz=100).checked().imgsz == 128
    with pytest.raises(DoctorError):
        DataConfig(cache="disk").checked()
    with pytest.raises(DoctorError):
        AugmentConfig(mosaic=1.5).checked()


def test_ram_cache_matches_disk_and_estimate_is_exact(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    logs = Warnings()
    cached = build_dataset(index, "val", 64, None, cache="ram", workers=2, log=logs)
    plain = build_dataset(index, "val", 64, None)
    assert cached.cache is not None and plain.cache is None
    assert estimate_cache_bytes(cached) == cached.cached_bytes() > 0
    assert any("caching" in line and "GiB" in line for line in logs)
    for i in range(0, len(plain), 7):
        np.testing.assert_array_equal(cached[i].image, plain[i].image)
        np.testing.assert_array_equal(cached[i].labels, plain[i].labels)


def test_ram_cache_falls_back_when_memory_is_short(sample_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainer.data.dataset.available_memory_bytes", lambda: 1000)
    warnings = Warnings()
    dataset = build_dataset(build_index(sample_yaml, progress=False), "val", 64, None, cache="ram", warn=warnings)
    assert dataset.cache is None and any("not caching" in w for w in warnings)


def test_training_batches_do_not_depend_on_workers(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    augment = AugmentConfig(degrees=5)
    batches = {}
    for workers in (0, 2):
        loader = build_train_loader(index, DataConfig(imgsz=64, workers=workers, multi_scale=True), augment,
                                    batch_size=16, epochs=10, seed=4)
        set_loader_epoch(loader, 1)
        batches[workers] = [b for _, b in zip(range(3), loader)]
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
        assert torch.equal(a.indices, b.indices)
    # Another epoch, another sample and other augmentations.
    loader = build_train_loader(index, DataConfig(imgsz=64, workers=0, multi_scale=True), augment, batch_size=16,
                                epochs=10, seed=4)
    set_loader_epoch(loader, 2)
    assert not torch.equal(next(iter(loader)).indices, batches[0][0].indices)


def test_same_key_same_sample_other_draw_other_augmentation(sample_yaml: Path) -> None:
    dataset = build_dataset(build_index(sample_yaml, progress=False), "train", 64, AugmentConfig(), epochs=20)
    a, b, c = dataset[SampleKey(5, 0, 17)], dataset[SampleKey(5, 0, 17)], dataset[SampleKey(5, 0, 18)]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)


def test_eval_view_of_a_training_dataset(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    train = build_dataset(index, "train", 64, AugmentConfig(), cache="ram", workers=1)
    view = train.view([3, 1, 2])
    assert not view.training and train.training and len(view) == 3
    assert view.images.names == [train.images.names[i] for i in (3, 1, 2)]
    assert view.cache[0] is train.cache[3]  # shared, not copied
    loader = make_eval_loader(view, batch_size=2, workers=0)
    assert [b.indices.tolist() for b in loader] == [[0, 1], [2]]
    evaluated = build_dataset(index, "train", 64, None)
    np.testing.assert_array_equal(view[0].image, evaluated[3].image)


def test_uniform_sampler_with_loader_covers_each_image_once(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    loader = build_train_loader(index, DataConfig(imgsz=32, workers=0), AugmentConfig.off(), batch_size=32,
                                epochs=1)
    assert isinstance(loader.sampler, UniformSampler)
    seen = sorted(i for b in loader for i in b.indices.tolist())
    assert seen == list(range(len(loader.dataset)))


def test_balanced_loader_draws_mosaic_partners_with_the_same_weights(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    weights = np.linspace(1, 5, index.nc)
    loader = build_train_loader(index, DataConfig(imgsz=32, workers=0, sampler="balanced"), AugmentConfig(),
                                batch_size=8, epochs=1, class_weights=weights)
    probabilities = loader.dataset.partner_probabilities
    assert probabilities is not None and probabilities.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(probabilities, loader.sampler.probabilities)


def test_save_batches_writes_readable_jpegs(sample_yaml: Path, tmp_path: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    loader = build_train_loader(index, DataConfig(imgsz=64, workers=0), AugmentConfig(), batch_size=6, epochs=5)
    written = save_batches(loader, index.names, tmp_path / "train_batches", count=2)
    assert [p.name for p in written] == ["train_batch0.jpg", "train_batch1.jpg"]
    grid = cv2.imread(str(written[0]))
    assert grid.shape == (2 * 64, 3 * 64, 3)  # 6 images: 3 columns, 2 rows
    assert grid.std() > 10  # images, not a blank canvas


def test_empty_split_after_skipping_is_a_clear_error(make_dataset) -> None:
    yaml_path = make_dataset({"train": {"a.jpg": "5 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": ""}})
    with pytest.raises(DoctorError, match="no usable image"):
        select_images(build_index(yaml_path, progress=False), "train", lambda message: None)


def test_image_set_subset() -> None:
    images = ImageSet("train", ["a", "b", "c"], ["/a", "/b", "/c"], np.array([4, 5, 6]), np.ones((3, 2), int),
                      [np.zeros((0, 5), np.float32)] * 3)
    subset = images.subset([2, 0])
    assert subset.names == ["c", "a"] and subset.image_ids.tolist() == [6, 4]


def test_uint8_batches_become_the_float_contract_on_to(sample_yaml: Path) -> None:
    dataset = build_dataset(build_index(sample_yaml, progress=False), "val", 64)
    samples = [dataset[i] for i in range(4)]
    as_float = Collate(64)(samples)
    as_uint8 = Collate(64, uint8_images=True)(samples)
    assert as_uint8.images.dtype == torch.uint8 and as_float.images.dtype == torch.float32
    moved = as_uint8.to("cpu")
    assert moved.images.dtype == torch.float32 and torch.equal(moved.images, as_float.images)
    assert torch.equal(as_float.to("cpu").images, as_float.images)
    assert torch.equal(moved.targets, as_float.targets)


def test_dataset_and_collate_pickle_for_spawned_workers(sample_yaml: Path) -> None:
    import pickle

    dataset = build_dataset(build_index(sample_yaml, progress=False), "train", 64, AugmentConfig(pixel_ops=1.0))
    dataset[SampleKey(0, 0, 0)]  # builds the albumentations pipeline, which must not travel
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.pixel_ops._compose is None
    np.testing.assert_array_equal(clone[SampleKey(3, 1, 9)].image, dataset[SampleKey(3, 1, 9)].image)
    collate = pickle.loads(pickle.dumps(Collate(64, multi_scale=True, seed=3, batch_stride=8)))
    assert collate.scale_for(2, 16) == Collate(64, multi_scale=True, seed=3, batch_stride=8).scale_for(2, 16)


def test_skip_warnings_are_capped_with_a_summary(make_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainer.data.dataset.MAX_SKIP_WARNINGS", 2)
    yaml_path = make_dataset({"train": {f"im{k}.jpg": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n" for k in range(5)},
                              "val": {"v.jpg": ""}})
    warnings = Warnings()
    select_images(build_index(yaml_path, progress=False), "train", warnings)
    assert len(warnings) == 3 and "3 more" in warnings[-1]


def test_exif_orientation_matches_the_index(make_dataset) -> None:
    import struct

    yaml_path = make_dataset({"train": {"turned.jpg": "0 0.25 0.5 0.2 0.2\n"}, "val": {"v.jpg": ""}}, size=(80, 40))
    path = yaml_path.parent / "images" / "train" / "turned.jpg"
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd  # orientation 6: rotate 90 degrees
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    index = build_index(yaml_path, progress=False)
    sample = build_dataset(index, "train", 64)[0]
    width, height = index.images_in("train")[["width", "height"]].iloc[0]
    assert (width, height) == (40, 80) and sample.original_size == (80, 40)


def test_distributed_ranks_share_the_multi_scale_side_per_step(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    data = DataConfig(imgsz=64, workers=0, multi_scale=True)
    sides, draws = [], []
    for rank in range(2):
        loader = build_train_loader(index, data, AugmentConfig.off(), batch_size=4, epochs=1, seed=2, rank=rank,
                                    world_size=2)
        batches = list(loader)
        sides.append([b.images.shape[-1] for b in batches])
        draws.append({key.draw for key in loader.sampler})
    assert sides[0] == sides[1] and len(set(sides[0])) > 1
    assert not draws[0] & draws[1]


def test_large_jpegs_decode_reduced_without_moving_boxes(tmp_path: Path) -> None:
    from trainer.data.dataset import decode_reduction, load_resized, read_image

    boxes = [(64, 32, 192, 160), (320, 96, 480, 224)]
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(painted_image(512, 256, boxes), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert decode_reduction(str(path), 512, 256, 64) == 8
    assert decode_reduction(str(path), 512, 256, 100) == 4
    assert decode_reduction(str(path), 510, 256, 64) == 2  # 8 and 4 do not divide 510
    assert decode_reduction(str(tmp_path / "big.png"), 512, 256, 64) == 1  # only JPEG decodes scaled
    reduced, original = load_resized(str(path), (512, 256), 128)
    assert original == (256, 512) and reduced.shape == (64, 128, 3)
    full = cv2.resize(read_image(str(path)), (128, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 3
    for (x1, y1, x2, y2), colour in zip(boxes, COLOURS):
        np.testing.assert_allclose(colour_box(reduced, colour), np.array([x1, y1, x2, y2]) / 4, atol=1.0)
    # A file that changed size since it was indexed is decoded whole, with its real size.
    image, original = load_resized(str(path), (1024, 512), 128)
    assert original == (256, 512) and image.shape == (64, 128, 3)


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_images_above_the_pixel_budget_decode_reduced_or_are_skipped(tmp_path, monkeypatch) -> None:
    import trainer.data.dataset as data
    from tests.odd_files import dataset_with_huge_png

    yaml_path = dataset_with_huge_png(tmp_path / "data", side=8000)  # a 64-megapixel PNG and 96x64 JPEGs
    index = build_index(yaml_path, progress=False)
    warnings = Warnings()
    images = select_images(index, "train", warnings)
    assert "images/train/huge.png" not in images.names and len(images) == 3 and images.skipped_images == 1
    assert warnings == ["images/train/huge.png: skipped, 8000x8000 pixels is above the --max-pixels budget of 50 "
                        "megapixels and a png cannot be decoded at a reduced size"]
    # With a budget of 1000 pixels the 96x64 JPEGs are kept and decoded at 1/4 (24x16; 1/2 is 48x32 = 1536)
    small_budget = select_images(index, "train", Warnings(), max_pixels=1000)
    assert len(small_budget) == 3
    reductions = []
    real_read = data.read_image
    monkeypatch.setattr(data, "read_image", lambda path, reduction=1: reductions.append(reduction) or
                        real_read(path, reduction))
    dataset = YoloDataset(small_budget, 64, max_pixels=1000)
    image, original = dataset.load(0)
    assert reductions == [4] and original == (64, 96) and max(image.shape[:2]) == 64
    assert YoloDataset(small_budget, 64).load(0)[1] == (64, 96) and reductions[-1] == 1


def test_training_reads_a_name_that_is_not_utf8(tmp_path) -> None:
    from tests.odd_files import dataset_with_bad_name

    index = build_index(dataset_with_bad_name(tmp_path / "data"), progress=False)
    dataset = build_dataset(index, "train", 64)
    position = dataset.images.names.index("images/train/bad\udcff\udcfe.jpg")
    image, original = dataset.load(position)
    assert original == (64, 96) and image.shape[:2] == (43, 64)


def test_training_keeps_recent_images_without_changing_samples(sample_yaml: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The training buffer of recent images (YoloDataset.load): bounded, read-only, per dataset (a view starts
    empty), and a sample served from it equals the same sample from a dataset that decodes every image."""
    import trainer.data.dataset as dataset_module

    index = build_index(sample_yaml, progress=False)
    augment = AugmentConfig(copy_paste=0.5)  # mosaic (four images a sample) and pastes read kept images too
    keys = [SampleKey(i, 0, i) for i in range(12)]
    fresh = [build_dataset(index, "train", 64, augment, epochs=20)[key] for key in keys]
    image_bytes = fresh[0].image.nbytes  # at most one resized image's size (long side 64)
    monkeypatch.setattr(dataset_module, "RECENT_IMAGES_BYTES", 6 * image_bytes)
    buffered = build_dataset(index, "train", 64, augment, epochs=20)
    for _ in range(2):  # the second pass meets images kept by the first
        for key, expected in zip(keys, fresh, strict=True):
            sample = buffered[key]
            np.testing.assert_array_equal(sample.image, expected.image)
            np.testing.assert_array_equal(sample.labels, expected.labels)
    assert len(buffered.recent) > 0 and buffered.recent_bytes <= 6 * image_bytes
    assert buffered.recent_bytes == sum(image.nbytes for image, _ in buffered.recent.values())
    kept = next(iter(buffered.recent.values()))[0]
    with pytest.raises(ValueError):
        kept[0, 0] = 0
    assert len(buffered.view([3, 1], evaluation=False).recent) == 0
    assert len(pickle.loads(pickle.dumps(buffered)).recent) == 0  # what a spawned loader worker receives
    evaluation = build_dataset(index, "train", 64, None)
    evaluation[0]
    assert len(evaluation.recent) == 0  # evaluation decodes each image once an epoch: nothing kept

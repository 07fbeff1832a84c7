"""Fine-tuning: classes mapped by name, freezing (weights and BatchNorm statistics), YOLOv8 state_dict import."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from dataset_doctor.errors import DoctorError
from tests.trainer.test_loop import quick_settings, tiny_yaml  # noqa: F401 (fixture)
from tests.trainer.yolov8_fixture import yolov8_state_dict
from trainer import loop
from trainer import run_dir as files
from trainer.checkpoint import save_checkpoint
from trainer.data.dataset import ImageSet, select_images
from trainer.data.replay import ReplaySampler, remap_replay, replay_draws
from trainer.finetune import (
    ClassMapping,
    freeze_layer_count,
    keep_frozen_batchnorm_eval,
    load_source,
    set_frozen,
    transfer,
)
from trainer.model.detector import Detector, ModelConfig
from trainer.optim import build_optimizer
from trainer.setup import start_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASS_ROWS = [f"head.cls_branches.{level}.2.{kind}" for level in range(3) for kind in ("weight", "bias")]


def randomised(model: Detector, seed: int) -> Detector:
    """Every tensor random (BN statistics too), so a copied tensor cannot equal a fresh one by chance."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                value.copy_(torch.randn(value.shape, generator=generator).abs() + 0.1 if "running_var" in key
                            else torch.randn(value.shape, generator=generator) * 0.1)
    return model


def test_class_mapping_keeps_rows_by_name_and_starts_new_classes_fresh():
    source = randomised(Detector(ModelConfig(num_classes=3)), seed=1)
    target = Detector(ModelConfig(num_classes=4, cls_hidden=64))
    fresh = {key: value.clone() for key, value in target.state_dict().items()}
    mapping = transfer(source, ["cat", "dog", "fox"], target, ["dog", "owl", "cat", "eel"])
    assert mapping.kept == {0: 1, 2: 0} and mapping.added == ["owl", "eel"] and mapping.dropped == ["fox"]
    assert "kept 2 (dog, cat), added 2 (owl, eel), dropped 1 (fox)" in mapping.summary()
    theirs, own = source.state_dict(), target.state_dict()
    for key in CLASS_ROWS:
        assert torch.equal(own[key][0], theirs[key][1]) and torch.equal(own[key][2], theirs[key][0])
        assert torch.equal(own[key][1], fresh[key][1]) and torch.equal(own[key][3], fresh[key][3])
    # the fresh bias is the prior-probability one (Focal Loss 4.1), not the source's
    prior = 5.0 / (4 * (640 / 8) ** 2)
    assert own["head.cls_branches.0.2.bias"][1].item() == pytest.approx(math.log(prior / (1 - prior)))
    for key in own:
        if key not in CLASS_ROWS:
            assert torch.equal(own[key], theirs[key]), key


def test_freezing_keeps_weights_and_batchnorm_statistics_bit_identical():
    model = randomised(Detector(ModelConfig(num_classes=2)), seed=2)
    assert freeze_layer_count("backbone") == 10 and freeze_layer_count("neck") == 22
    assert freeze_layer_count("3") == 3
    with pytest.raises(DoctorError, match="--freeze"):
        freeze_layer_count("head")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    set_frozen(model, freeze_layer_count("backbone"))
    optimizer = build_optimizer(model, "SGD", 0.1, 0.9, 5e-4)
    for _ in range(2):
        model.train()
        keep_frozen_batchnorm_eval(model, 10)
        outputs = model(torch.randn(2, 3, 64, 64))
        sum(o.square().mean() for o in outputs).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    backbone = [key for key in after if key.startswith("backbone.")]
    assert all(torch.equal(after[key], before[key]) for key in backbone)  # running_mean/var/num_batches too
    assert not torch.equal(after["neck.top_down4.conv_in.bn.running_mean"],
                           before["neck.top_down4.conv_in.bn.running_mean"])
    assert not torch.equal(after["neck.top_down4.conv_in.conv.weight"], before["neck.top_down4.conv_in.conv.weight"])
    set_frozen(model, 0)
    assert all(parameter.requires_grad for parameter in model.parameters())


def our_checkpoint(path: Path, model: Detector, names: list[str]) -> Path:
    save_checkpoint(path, {"model": model.state_dict(), "ema": None, "model_config": dict(vars(model.config)),
                           "names": names})
    return path


def test_a_run_from_weights_maps_classes_freezes_then_unfreezes(tiny_yaml, tmp_path, monkeypatch):  # noqa: F811
    names = yaml.safe_load(Path(tiny_yaml).read_text())["names"]
    names = list(names.values()) if isinstance(names, dict) else list(names)
    source_names = [names[2], "zebra", names[0]]
    source = Detector(ModelConfig(num_classes=3))  # prior biases: few boxes over conf 0.001, a fast evaluation
    with torch.no_grad():  # BatchNorm statistics no fresh model has, so keeping them is seen
        for module in source.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.fill_(0.01)
                module.running_var.fill_(1.5)
    weights = our_checkpoint(tmp_path / "base.pt", source, source_names)
    backbones: list[dict[str, torch.Tensor]] = []
    original_save = loop.save_checkpoints

    def recording(run, *args):
        backbones.append({k: v.clone() for k, v in loop.unwrap(run.model).backbone.state_dict().items()})
        return original_save(run, *args)

    monkeypatch.setattr(loop, "save_checkpoints", recording)
    # what is tested is the training steps; evaluating a barely trained model at conf 0.001 is most of the time
    monkeypatch.setattr(loop, "evaluate_both", lambda run: (None, None))
    monkeypatch.setattr(loop, "finish", lambda run, epoch: None)  # forgetting: its own test below
    output = io.StringIO()
    console = Console(file=output, width=300)
    settings = quick_settings(tiny_yaml, tmp_path, weights=str(weights), freeze="backbone", freeze_epochs=1,
                              save_batches=0, ema=False, eval_every=5)
    settings = type(settings)(settings.with_train(batch=16).train, type(settings.data)(imgsz=64, workers=0),
                              type(settings.augment)(mosaic=0.0))  # 4 steps an epoch, cheap augmentation
    run_dir = loop.train(settings, console=console, progress=False)
    log = output.getvalue()
    assert f"kept 2 ({names[0]}, {names[2]})" in log and "dropped 1 (zebra)" in log
    assert "epoch 2: every layer unfrozen" in log
    theirs = {k[len("backbone."):]: v for k, v in source.state_dict().items() if k.startswith("backbone.")}
    assert all(torch.equal(backbones[0][key], theirs[key]) for key in theirs)  # epoch 1: frozen, BN included
    assert not torch.equal(backbones[1]["stem.conv.weight"], theirs["stem.conv.weight"])  # epoch 2: trained
    args = files.read_args(run_dir)
    assert args["train"]["freeze"] == "backbone" and args["resolved"]["freeze_layers"] == 10
    assert args["resolved"]["weights_classes"]["dropped"] == ["zebra"]
    assert args["resolved"]["lr0"] == pytest.approx(0.0001) and args["resolved"]["warmup_epochs"] == 1.0
    assert args["resolved"]["replay_images"] == 0


def test_the_train_loader_appends_replay_images_and_samples_them(tiny_yaml):  # noqa: F811
    from dataset_doctor.dataset.index import build_index
    from trainer.data.config import AugmentConfig, DataConfig
    from trainer.data.loader import build_train_loader

    index = build_index(tiny_yaml, progress=False)
    names = list(index.names)
    replay = remap_replay(select_images(index, "train"), names, names[:2])
    loader = build_train_loader(index, DataConfig(imgsz=64, workers=0), AugmentConfig(), 8, replay=replay,
                                replay_ratio=0.2)
    new = len(loader.dataset) - len(replay)
    assert isinstance(loader.sampler, ReplaySampler) and loader.sampler.new_images == new
    assert loader.sampler.replays == replay_draws(new, 0.2)
    assert loader.dataset.images.image_ids[new:].max() < 0  # never taken for images of the new index
    with pytest.raises(DoctorError, match="--sampler balanced"):
        build_train_loader(index, DataConfig(imgsz=64, workers=0, sampler="balanced"), AugmentConfig(), 8,
                           class_weights=[1.0] * len(names), replay=replay)


def test_forgetting_is_measured_per_base_class_before_and_after(tiny_yaml, tmp_path):  # noqa: F811
    from types import SimpleNamespace

    from dataset_doctor.dataset.index import build_index
    from trainer.config import TrainSettings
    from trainer.forgetting import BaseClassView, measure_forgetting

    index = build_index(tiny_yaml, progress=False)
    names = list(index.names)
    source = Detector(ModelConfig(num_classes=2))
    weights = our_checkpoint(tmp_path / "base.pt", source, [names[1], names[0]])
    settings = quick_settings(tiny_yaml, tmp_path, weights=str(weights), conf=0.01)
    settings = TrainSettings(settings.train, type(settings.data)(imgsz=64, workers=0), settings.augment)
    run = SimpleNamespace(settings=settings, replay_index=index, device=SimpleNamespace(device=torch.device("cpu"),
                                                                                          amp_dtype=None))
    after = Detector(ModelConfig(num_classes=1)).eval()
    table = measure_forgetting(run, after, [names[0]])
    assert [row["class"] for row in table["classes"]] == names
    view = BaseClassView(after, [names[0]], names)
    decoded = view(torch.zeros(1, 3, 64, 64))
    assert decoded.shape[1] == 4 + len(names) and torch.equal(decoded[:, 4], after(torch.zeros(1, 3, 64, 64))[:, 4])
    assert not decoded[:, 5:].any()  # classes the fine-tuned model lacks score nothing
    measured = [row for row in table["classes"] if row["ap50_95_before"] is not None]
    assert measured and all(row["ap50_95_drop"] == pytest.approx(row["ap50_95_before"] - row["ap50_95_after"])
                            for row in measured)


def test_a_checkpoint_of_another_scale_is_one_line(tiny_yaml, tmp_path):  # noqa: F811
    weights = our_checkpoint(tmp_path / "s.pt", Detector(ModelConfig(scale="s", num_classes=2)), ["a", "b"])
    with pytest.raises(DoctorError, match="pass --model s"):
        start_run(quick_settings(tiny_yaml, tmp_path, weights=str(weights), save_batches=0))


def test_yolov8_state_dict_maps_onto_our_modules_exactly(tmp_path):
    reference = randomised(Detector(ModelConfig(num_classes=80)), seed=4).eval()
    coco = [f"class{i}" for i in range(80)]
    state = yolov8_state_dict(reference)
    assert {"model.2.m.0.cv1.conv.weight", "model.9.cv2.bn.running_var", "model.21.cv2.conv.weight",
            "model.22.cv2.0.2.bias", "model.22.cv3.2.2.weight", "model.22.dfl.conv.weight"} <= set(state)
    path = tmp_path / "yolov8n_state.pt"
    torch.save({"state_dict": state, "names": dict(enumerate(coco))}, path)
    model, names, kind = load_source(path)
    assert kind == "yolov8" and names == coco and model.config.scale == "n"
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), reference(images))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_yolov8_file_with_an_extra_or_missing_key_is_an_error_naming_it(tmp_path):
    state = yolov8_state_dict(Detector(ModelConfig(num_classes=80)))
    extra = {**state, "model.22.cv4.0.weight": torch.zeros(1)}
    torch.save({"state_dict": extra, "names": [str(i) for i in range(80)]}, tmp_path / "extra.pt")
    with pytest.raises(DoctorError, match=r"model\.22\.cv4\.0\.weight"):
        load_source(tmp_path / "extra.pt")
    missing = {k: v for k, v in state.items() if k != "model.15.m.0.cv2.bn.bias"}
    torch.save({"state_dict": missing, "names": [str(i) for i in range(80)]}, tmp_path / "missing.pt")
    with pytest.raises(DoctorError, match=r"model\.15\.m\.0\.cv2\.bn\.bias"):
        load_source(tmp_path / "missing.pt")
    torch.save({"state_dict": state}, tmp_path / "nameless.pt")
    with pytest.raises(DoctorError, match="--weights-names"):
        load_source(tmp_path / "nameless.pt")
    (tmp_path / "coco.txt").write_text("\n".join(f"c{i}" for i in range(80)))
    assert load_source(tmp_path / "nameless.pt", tmp_path / "coco.txt")[1][79] == "c79"


def test_yolov8_import_feeds_a_new_class_list_by_name(tmp_path):
    source = randomised(Detector(ModelConfig(num_classes=80)), seed=5)
    coco = [f"class{i}" for i in range(80)]
    torch.save({"state_dict": yolov8_state_dict(source), "names": coco}, tmp_path / "w.pt")
    model, names, _ = load_source(tmp_path / "w.pt")
    target = Detector(ModelConfig(num_classes=2, cls_hidden=model.head.cls_branches[0][-1].in_channels))
    mapping = transfer(model, names, target, ["class7", "pufferfish"])
    assert isinstance(mapping, ClassMapping) and mapping.kept == {0: 7} and len(mapping.dropped) == 79
    assert torch.equal(target.state_dict()["head.cls_branches.1.2.weight"][0],
                       source.state_dict()["head.cls_branches.1.2.weight"][7])


def test_replay_sampler_mixes_the_ratio_into_every_epoch():
    sampler = ReplaySampler(new_images=30, replay_images=100, ratio=0.25, seed=3)
    assert sampler.replays == 10 and len(sampler) == 40
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        draws = [key.index for key in sampler]
        assert sorted(d for d in draws if d < 30) == list(range(30))  # every new image once
        replays = [d for d in draws if d >= 30]
        assert len(replays) == 10 and len(set(replays)) == 10 and max(replays) < 130  # a quarter, no repeats
        epochs.append(set(replays))
    assert epochs[0] != epochs[1]  # other base images each epoch
    few = ReplaySampler(new_images=9, replay_images=2, ratio=0.5)
    replayed = [key.index for key in few if key.index >= 9]
    assert len(replayed) == 9 and min(replayed.count(9), replayed.count(10)) >= 4  # each base image, repeated
    assert replay_draws(8, 0.5) == 8


def test_replay_labels_are_remapped_by_name_and_unknown_classes_left_out():
    boxes = np.array([[0, 0.5, 0.5, 0.1, 0.1], [1, 0.2, 0.2, 0.1, 0.1], [2, 0.3, 0.3, 0.1, 0.1]], dtype=np.float32)
    base = ImageSet("train", ["a.jpg"], ["/x/a.jpg"], np.array([7]), np.array([[64, 64]]), [boxes])
    replay = remap_replay(base, ["cat", "dog", "fox"], ["dog", "owl", "cat"])
    assert replay.labels[0][:, 0].tolist() == [2, 0] and replay.image_ids.tolist() == [-1]
    assert replay.names == ["replay:a.jpg"]


def test_a_run_from_weights_resumes_without_mapping_or_initialising_again(tiny_yaml, tmp_path, monkeypatch):  # noqa: F811
    """--resume of a --weights run continues from last.pt: the --weights file is not read again (here it is
    garbage by then), the model is the checkpoint's (not the source's mapped anew), freezing and the fine-tuning
    learning rate carry over, and the run finishes its epochs."""
    from trainer.checkpoint import load_checkpoint

    names = yaml.safe_load(Path(tiny_yaml).read_text())["names"]
    names = list(names.values()) if isinstance(names, dict) else list(names)
    weights = our_checkpoint(tmp_path / "base.pt", randomised(Detector(ModelConfig(num_classes=2)), seed=6),
                             [names[1], "zebra"])
    monkeypatch.setattr(loop, "evaluate_both", lambda run: (None, None))  # the steps are what is tested
    monkeypatch.setattr(loop, "finish", lambda run, epoch: None)
    settings = quick_settings(tiny_yaml, tmp_path, weights=str(weights), freeze="backbone", save_batches=0,
                              ema=False, eval_every=5)
    settings = type(settings)(settings.with_train(batch=16).train, type(settings.data)(imgsz=64, workers=0),
                              type(settings.augment)(mosaic=0.0))
    original_save = loop.save_checkpoints

    class Killed(Exception):
        pass

    def killed_after_saving(run, *arguments):  # a crash right after epoch 1's checkpoints are written
        original_save(run, *arguments)
        raise Killed

    monkeypatch.setattr(loop, "save_checkpoints", killed_after_saving)
    with pytest.raises(Killed):
        loop.train(settings, console=Console(file=io.StringIO()), progress=False)
    monkeypatch.setattr(loop, "save_checkpoints", original_save)
    run_dir = tmp_path / "exp"
    args_before = files.read_args(run_dir)
    checkpoint = load_checkpoint(run_dir / files.LAST_CHECKPOINT)
    assert checkpoint["epoch"] == 0
    weights.write_bytes(b"not a checkpoint any more")  # reading it again would be a DoctorError

    output = io.StringIO()
    run = start_run(None, resume_dir=run_dir, console=Console(file=output, width=300))
    assert "initialised from" not in output.getvalue()
    assert run.start_epoch == 1
    trained = checkpoint["model"]
    assert all(torch.equal(value, trained[key]) for key, value in run.model.state_dict().items())
    assert not any(parameter.requires_grad for parameter in run.model.backbone.parameters())  # still frozen
    assert run.schedule.lr0 == pytest.approx(args_before["resolved"]["lr0"]) == pytest.approx(0.0001)
    assert files.read_args(run_dir) == args_before  # the class mapping of the start is still what args.yaml says

    loop.train(None, resume=run_dir, console=Console(file=io.StringIO()), progress=False)
    assert [row["epoch"] for row in files.read_results(run_dir)] == [1, 2]
    assert load_checkpoint(run_dir / files.LAST_CHECKPOINT)["epoch"] == 1


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.int64: "I64"}  # what a detection state_dict holds


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """The safetensors layout (8-byte little-endian header size, a JSON header of dtype / shape / byte offsets,
    then the raw little-endian bytes), written here so the test needs no package."""
    import json
    import struct

    header, blobs, offset = {}, [], 0
    for key, value in tensors.items():
        data = value.detach().contiguous().numpy().tobytes()
        header[key] = {"dtype": _SAFETENSORS_DTYPES[value.dtype], "shape": list(value.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def _read_safetensors(filename: str) -> dict[str, torch.Tensor]:
    """A stand-in for safetensors.torch.load_file (F32 and I64), for machines without the package."""
    import json
    import struct

    data = Path(filename).read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    body = data[8 + size:]
    numpy_dtype = {"F32": "<f4", "I64": "<i8"}
    return {key: torch.from_numpy(np.frombuffer(body[start:end], dtype=numpy_dtype[entry["dtype"]]).copy()
                                  ).reshape(entry["shape"])
            for key, entry in header.items() if key != "__metadata__"
            for start, end in [entry["data_offsets"]]}


def test_safetensors_weights_load_through_the_package_or_say_it_is_missing(tmp_path, monkeypatch):
    import sys
    import types

    source = randomised(Detector(ModelConfig(num_classes=80)), seed=7).eval()
    path = tmp_path / "yolov8n.safetensors"
    _write_safetensors(path, yolov8_state_dict(source))
    (tmp_path / "coco.txt").write_text("\n".join(f"c{i}" for i in range(80)))

    monkeypatch.setitem(sys.modules, "safetensors", None)  # as on a machine without the package
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(DoctorError, match="needs the safetensors package: pip install safetensors") as missing:
        load_source(path, tmp_path / "coco.txt")
    assert str(path) in str(missing.value) and "\n" not in str(missing.value)

    package = types.ModuleType("safetensors")
    package.torch = types.SimpleNamespace(load_file=_read_safetensors)
    monkeypatch.setitem(sys.modules, "safetensors", package)
    monkeypatch.setitem(sys.modules, "safetensors.torch", package.torch)
    with pytest.raises(DoctorError, match="--weights-names"):  # a safetensors file carries no class names
        load_source(path)
    model, names, kind = load_source(path, tmp_path / "coco.txt")
    assert kind == "yolov8" and names[79] == "c79"
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), source(images))
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken!")
    with pytest.raises(DoctorError, match="not a readable safetensors file"):
        load_source(path, tmp_path / "coco.txt")

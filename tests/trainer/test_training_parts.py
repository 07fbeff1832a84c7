"""The small parts of the training loop: schedule, EMA, optimizer groups, checkpoints."""

from __future__ import annotations

import argparse
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from dataset_doctor.dataset.datayaml import load_data_yaml
from dataset_doctor.errors import DoctorError
from tests import hostile_outputs as outputs
from tests.tiny_dataset import write_tiny_dataset
from tests.trainer.runs import write_run_with_checkpoint
from trainer import run_dir as files
from trainer.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from trainer.divergence import DivergenceWatch, exceeds_running_median
from trainer.ema import ModelEMA
from trainer.model.detector import Detector, ModelConfig
from trainer.optim import build_optimizer, choose_optimizer
from trainer.schedule import Schedule
from trainer.setup import start_run


def test_warmup_rises_weights_lowers_bias_and_ends_on_the_schedule():
    schedule = Schedule(lr0=0.01, lrf=0.01, epochs=10, iterations_per_epoch=50, warmup_epochs=3)
    assert schedule.warmup_iterations == 150
    (weight, norm, bias), momentum = schedule.values(epoch=0, iteration=0)
    assert (weight, norm, bias, momentum) == (0.0, 0.0, 0.1, 0.8)
    (weight, _, bias), momentum = schedule.values(epoch=1, iteration=75)
    target = 0.01 * schedule.epoch_factor(1)
    assert weight == pytest.approx(target / 2) and bias == pytest.approx((0.1 + target) / 2)
    assert momentum == pytest.approx((0.8 + 0.937) / 2)
    assert schedule.values(epoch=3, iteration=150) == ([0.01 * schedule.epoch_factor(3)] * 3, 0.937)


@pytest.mark.parametrize("cosine", [True, False])
def test_decay_goes_from_lr0_to_lr0_times_lrf(cosine):
    schedule = Schedule(lr0=0.02, lrf=0.05, epochs=20, iterations_per_epoch=10, warmup_epochs=0, cosine=cosine)
    rates = [schedule.values(epoch, epoch * 10)[0][0] for epoch in range(20)]
    assert rates[0] == pytest.approx(0.02) and rates[-1] == pytest.approx(0.001)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    middle = 0.02 * (0.05 + 0.95 * (1 + math.cos(math.pi * 10 / 19)) / 2) if cosine else 0.02 * (1 - 0.95 * 10 / 19)
    assert rates[10] == pytest.approx(middle)


def test_short_runs_still_warm_up_but_never_past_the_end():
    assert Schedule(0.01, 0.01, epochs=2, iterations_per_epoch=10).warmup_iterations == 19
    assert Schedule(0.01, 0.01, epochs=50, iterations_per_epoch=10).warmup_iterations == 100


def test_schedule_sets_momentum_for_sgd_and_beta1_for_adamw():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    schedule = Schedule(lr0=0.01, lrf=0.1, epochs=5, iterations_per_epoch=100)
    for name in ("SGD", "AdamW"):
        optimizer = build_optimizer(model, name, lr=0.01, momentum=0.937, weight_decay=5e-4)
        schedule.apply(optimizer, epoch=0, iteration=0)
        first = optimizer.param_groups[0]
        assert (first["momentum"] if name == "SGD" else first["betas"][0]) == 0.8
        assert [group["lr"] for group in optimizer.param_groups] == [0.0, 0.0, 0.1]


def test_weight_decay_only_on_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    optimizer = build_optimizer(model, "SGD", lr=0.01, momentum=0.9, weight_decay=5e-4)
    weights, norms, biases = (group["params"] for group in optimizer.param_groups)
    assert [p.shape for p in weights] == [torch.Size([4, 3, 3, 3]), torch.Size([2, 4, 1, 1])]
    assert [p.shape for p in norms] == [torch.Size([4])]
    assert [p.shape for p in biases] == [torch.Size([4]), torch.Size([2])]  # BN bias and conv bias
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 0.0, 0.0]
    assert optimizer.param_groups[0]["nesterov"] is True


def test_auto_optimizer_choice():
    assert choose_optimizer("auto", total_iterations=500, lr0=None) == ("AdamW", 0.001)
    assert choose_optimizer("auto", total_iterations=50_000, lr0=None) == ("SGD", 0.01)
    assert choose_optimizer("SGD", total_iterations=10, lr0=0.05) == ("SGD", 0.05)
    assert choose_optimizer("auto", total_iterations=500, lr0=None, adamw_lr=0.0005) == ("AdamW", 0.0005)
    assert choose_optimizer("auto", total_iterations=50_000, lr0=None, adamw_lr=0.0005) == ("SGD", 0.01)
    with pytest.raises(ValueError):
        choose_optimizer("Adam9000", 10, None)


def test_ema_follows_the_model_with_a_ramped_decay():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 0.0)
    ema = ModelEMA(model, decay=0.9)
    assert ema.current_decay() == pytest.approx(1 / 10)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.9, 2/11)
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1.0, abs=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_checkpoint_round_trip_with_weights_only_and_rng_states(tmp_path):
    random.seed(1)
    np.random.seed(2)
    np.random.normal()  # leaves a cached gaussian in NumPy's legacy state
    torch.manual_seed(3)
    model = nn.Linear(3, 2)
    path = tmp_path / "weights/last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 4, "args": {"lr0": 0.01}, "rng": rng_states()})
    expected = (random.random(), np.random.normal(), torch.rand(1).item())
    state = load_checkpoint(path)
    restore_rng_states(state["rng"])
    assert (random.random(), np.random.normal(), torch.rand(1).item()) == expected
    assert state["epoch"] == 4 and state["args"] == {"lr0": 0.01}
    assert torch.equal(state["model"]["weight"], model.weight)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_foreign_or_missing_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(DoctorError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DoctorError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(DoctorError, match="wrong format"):
        load_checkpoint(tmp_path / "other.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_holding_objects_are_refused(tmp_path):
    torch.save({"format": "dataset-doctor-yolo/1", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DoctorError, match="not a readable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_refused_checkpoints_never_advise_weights_only_false(tmp_path):
    torch.save({"format": "dataset-doctor-yolo/1", "args": argparse.Namespace(lr0=0.01)}, tmp_path / "ns.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip archive at all" * 8)
    messages = []
    for name in ("ns.pt", "junk.pt", "evil.pt"):
        if name == "evil.pt":
            torch.save({"payload": Evil()}, tmp_path / name)
        with pytest.raises(DoctorError) as caught:
            load_checkpoint(tmp_path / name)
        messages.append(str(caught.value))
    assert "argparse.Namespace" in messages[0]
    for message in messages:
        assert "weights_only" not in message and "False" not in message and "\n" not in message, message
        assert "\x1b" not in message, message


def resume_dataset(tmp_path):
    return write_tiny_dataset(tmp_path / "ds", {"train/a": "0 0.5 0.5 0.2 0.2\n", "train/b": "1 0.3 0.3 0.2 0.2\n",
                                                "val/v": "1 0.5 0.5 0.2 0.2\n"})


@pytest.mark.parametrize(("model_config", "drop", "expected"), [
    ({"scale": "n", "num_classes": 100}, (), "checkpoint has 100 classes, this run 2"),
    ({"scale": "s", "num_classes": 2}, (), "checkpoint scale s, this run n"),
    ({"scale": "s", "num_classes": 100}, (), "checkpoint has 100 classes, this run 2 (the names in"),
    ({"scale": "n", "num_classes": 2}, ("optimizer", "rng"), "the checkpoint lacks optimizer, rng"),
])
def test_resuming_a_checkpoint_of_another_run_says_what_differs(tmp_path, model_config, drop, expected):
    run = write_run_with_checkpoint(tmp_path / "runs/exp", resume_dataset(tmp_path), ModelConfig(**model_config),
                                    drop=drop)
    with pytest.raises(DoctorError, match="cannot resume run") as caught:
        start_run(None, resume_dir=run)
    message = str(caught.value)
    assert expected in message and str(run / "weights/last.pt") in message, message
    if model_config == {"scale": "s", "num_classes": 100}:
        assert "scale s, this run n" in message


def test_resuming_a_checkpoint_with_one_reshaped_tensor_names_it(tmp_path):
    config = ModelConfig(scale="n", num_classes=2)
    state = Detector(config).state_dict()
    key = next(name for name, tensor in state.items() if tensor.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    run = write_run_with_checkpoint(tmp_path / "runs/exp", resume_dataset(tmp_path), config, model_state=state)
    with pytest.raises(DoctorError, match=f"1 tensors of another shape \\(e.g. {key}: checkpoint \\(1, 1, 1, 1\\)"):
        start_run(None, resume_dir=run)


def test_divergence_is_a_loss_100x_over_its_running_median():
    assert exceeds_running_median([1.0, 2.0, 3.0, 2.0, 1.0], 201.0, factor=100, warmup=5) == 2.0
    assert exceeds_running_median([1.0, 2.0, 3.0, 2.0, 1.0], 199.0, factor=100, warmup=5) is None
    assert exceeds_running_median([1.0, 2.0, 3.0, 2.0], 1e9, factor=100, warmup=5) is None  # still warming up
    assert exceeds_running_median([0.0] * 40 + [1.0] * 5, 150.0, factor=100, warmup=5) == 1.0  # zeros: no boxes


def test_divergence_watch_is_quiet_on_a_noisy_healthy_run_and_warns_once():
    rng = np.random.default_rng(0)
    watch = DivergenceWatch()
    for step in range(300):  # falling losses with 3x noise, and batches without boxes (box loss 0)
        scale = 5.0 / (1 + step / 30)
        box = 0.0 if step % 7 == 0 else scale * rng.uniform(0.5, 1.5)
        assert watch.update([box, scale * rng.uniform(0.3, 3.0), scale], f"step {step}") is None
    message = watch.update([0.5, 6e16, 0.5], "epoch 3 step 4")
    assert message is not None and "cls loss jumped to 6e+16 at epoch 3 step 4" in message and "--lr0" in message
    assert watch.update([0.5, 6e17, 0.5], "epoch 3 step 5") is None  # once per run
    assert all(len(history) == watch.window for history in watch.history)  # bounded


def test_divergence_watch_catches_an_explosion_on_the_second_step():
    watch = DivergenceWatch()
    assert watch.update([3.0, 40.0, 2.0], "epoch 1 step 1") is None  # the first step sets the scale
    assert "cls loss jumped to 4e+09" in watch.update([3.5, 4e9, 2.5], "epoch 1 step 2")
    patient = DivergenceWatch(warmup=5)
    for value in (1.0, 1.0, 1.0, 1.0):
        assert patient.update([value] * 3, "start") is None
    assert patient.update([1e6] * 3, "step 5") is None  # a warm-up of five steps is still warming up
def test_a_project_the_dataset_reads_back_is_refused(tmp_path):
    """Issue 16 item 2: run files inside an image or label folder become part of the dataset (train_batches/*.jpg
    counted as train images by the next audit)."""
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    dataset = load_data_yaml(data_yaml)
    root = data_yaml.parent
    for project in (root / "images" / "train", root / "images" / "train" / "runs", root / "labels" / "train",
                    elsewhere / "images", elsewhere / "labels" / "runs"):
        with pytest.raises(DoctorError, match="--project is inside a folder the dataset reads"):
            files.check_run_location(project, "exp", False, dataset)
    with pytest.raises(DoctorError, match="holds a folder the dataset reads"):
        files.check_run_location(tmp_path / "world", "data", True, dataset)
    # Beside the images is fine: `cd dataset && doctor train data.yaml` writes runs/ there.
    files.check_run_location(root / "runs", "exp", False, dataset)
    files.check_run_location(tmp_path / "world", "data", False, dataset)  # a new name (data2) is picked
    assert not (root / "runs").exists()


def test_a_project_that_cannot_be_created_is_refused_before_training(tmp_path):
    data_yaml, below_a_file = outputs.under_a_file(tmp_path)
    dataset = load_data_yaml(data_yaml)
    with pytest.raises(DoctorError, match="cannot write the output here"):
        files.check_run_location(below_a_file, "exp", False, dataset)
    with pytest.raises(DoctorError, match="cannot write the output here") as refused:
        files.new_run_dir(below_a_file, "exp")
    assert "a-file/out/exp" in str(refused.value)


def test_ema_update_is_bitwise_the_per_tensor_average_and_copies_integer_buffers():
    """The multi-tensor EMA update (issue 22) computes exactly value * d + source * (1 - d), tensor by tensor."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    ema = ModelEMA(model, decay=0.999)
    reference = {name: value.clone() for name, value in ema.module.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    model(torch.rand(2, 3, 8, 8))  # moves BatchNorm's running statistics and num_batches_tracked
    ema.update(model)
    decay = min(0.999, 2 / 11)
    for name, value in ema.module.state_dict().items():
        source = model.state_dict()[name]
        if value.dtype.is_floating_point:
            expected = reference[name].mul_(decay).add_(source, alpha=1 - decay)
            assert torch.equal(value, expected), name
        else:
            assert torch.equal(value, source), name
    assert ema.module.state_dict()["1.num_batches_tracked"].item() == 1


def test_a_cpu_run_trains_a_channels_last_model(tmp_path):
    """oneDNN's NHWC convolutions are faster on CPU too (issue 22), so every device gets a channels-last model."""
    from trainer.config import TrainConfig, TrainSettings
    from trainer.data.config import DataConfig

    settings = TrainSettings(train=TrainConfig(data=str(resume_dataset(tmp_path)), epochs=1, batch=2, device="cpu",
                                               project=str(tmp_path / "runs"), tensorboard=False, save_batches=0),
                             data=DataConfig(imgsz=64, workers=0))
    run = start_run(settings)
    convolutions = [p for p in run.model.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)


def test_default_threads_honour_omp_num_threads(monkeypatch) -> None:
    from trainer.setup import _cores, default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads(world_size=1) == 1
    for unusable in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert default_threads(world_size=1) == _cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads(world_size=2) == max(1, _cores() // 2)

"""Everything a training run needs before its first step, new or resumed: `start_run` builds a `Run`.

Kept apart from the loop so trainer/loop.py shows the training itself and nothing else.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from dataset_doctor.dataset.datayaml import load_data_yaml
from dataset_doctor.dataset.index import DatasetIndex, build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.weights import ClassWeights, class_weights_for_index, resolve_class_weights
from trainer import run_dir as files
from trainer.accumulate import Accumulation
from trainer.checkpoint import load_checkpoint, restore_rng_states
from trainer.compiled import CompiledForward
from trainer.config import TrainConfig, TrainSettings, parse_model_name
from trainer.data.dataset import select_images
from trainer.data.loader import build_train_loader, make_eval_loader
from trainer.data.plot_batch import save_batches
from trainer.data.replay import remap_replay
from trainer.devices import DeviceChoice, choice_for_rank, choose_device
from trainer.divergence import DivergenceWatch
from trainer.ema import ModelEMA
from trainer.finetune import (
    FINETUNE_LR_FACTOR,
    FINETUNE_WARMUP_EPOCHS,
    SCRATCH_WARMUP_EPOCHS,
    active_freeze,
    freeze_layer_count,
    frozen_prefixes,
    load_source,
    set_frozen,
    transfer,
)
from trainer.model.detector import Detector, ModelConfig, model_summary
from trainer.model.loss import DetectionLoss, LossConfig
from trainer.optim import build_optimizer, choose_optimizer
from trainer.schedule import Schedule


@dataclass
class Run:
    """A training run in progress: settings, data, model and optimisation state, and where it writes."""

    settings: TrainSettings
    dir: Path
    console: Console
    device: DeviceChoice
    index: DatasetIndex
    class_weights: ClassWeights  # what the loss uses ("none": all 1)
    sampling_weights: ClassWeights  # what the balanced sampler uses (always the auto weights)
    model: nn.Module
    ema: ModelEMA | None
    loss: DetectionLoss
    optimizer: torch.optim.Optimizer
    optimizer_name: str
    scaler: torch.amp.GradScaler
    schedule: Schedule
    train_loader: DataLoader
    val_loader: DataLoader | None  # evaluation loaders exist on rank 0 only
    train_eval_loader: DataLoader | None
    train_eval_positions: list[int]
    rank: int = 0
    world_size: int = 1
    start_epoch: int = 0
    best_fitness: float = float("-inf")
    best_epoch: int = -1
    stale_evaluations: int = 0
    bad_steps: int = 0
    elapsed_before: float = 0.0  # seconds trained before a resume
    started_at: float = field(default_factory=time.perf_counter)
    divergence: DivergenceWatch = field(default_factory=DivergenceWatch)  # running loss medians, warns once
    warnings: list[str] = field(default_factory=list)  # warnings of this run so far, as in warnings.json
    freeze_layers: int = 0  # --freeze as a count of YOLOv8's numbered layers (0: nothing frozen)
    replay_index: DatasetIndex | None = None  # --replay: the base dataset (its val split measures forgetting)
    train_forward: CompiledForward | None = None  # --compile: the compiled training forward; model stays plain

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def iterations_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def accumulation(self) -> Accumulation:
        """Batches per optimizer step (--nbs); trainer/accumulate.py."""
        return Accumulation(self.settings.train.batch, self.settings.train.nbs)

    def evaluation_model(self) -> nn.Module:
        """The weights that are evaluated and saved as the result: the EMA when it is on."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def print(self, *objects: object) -> None:
        if self.is_main:
            self.console.print(*objects)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def start_run(settings: TrainSettings | None, resume_dir: Path | None = None, console: Console | None = None,
              rank: int = 0, world_size: int = 1, run_dir: Path | None = None,
              device: torch.device | None = None) -> Run:
    """Build a run. Distributed: every rank calls this; the launcher gives each its device and the run dir."""
    console = console or Console()
    checkpoint = None
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        checkpoint = load_checkpoint(resume_dir / files.LAST_CHECKPOINT)
        _require_resume_state(checkpoint, resume_dir)
        settings = TrainSettings.from_dict(files.read_args(resume_dir))
    config = settings.train.checked()
    data_config = settings.data.checked(lambda message: console.print(f"[yellow]warning:[/] {message}"))
    settings = TrainSettings(config, data_config, settings.augment.checked())
    dataset = load_data_yaml(config.data)
    if resume_dir is None and run_dir is None:  # this call creates the run directory: refuse a bad one now
        files.check_run_location(config.project, config.name, config.exist_ok, dataset)

    device = choice_for_rank(device, config.amp) if device is not None else choose_device(config.device, config.amp)
    if device.distributed and world_size == 1:
        raise DoctorError("several GPUs need the distributed launcher (doctor train handles this itself)")
    torch.set_num_threads(config.threads or default_threads(world_size))
    _seed_everything(config.seed + rank, config.deterministic)

    index = _rank_zero_first(lambda: build_index(dataset, progress=rank == 0), world_size, rank)
    index.config.require_valid_names()
    names = list(index.names)
    if not index.instances("train").any():
        raise DoctorError("the train split has no usable box: nothing to learn", index.config.yaml_path)
    class_weights = resolve_class_weights(config.class_weights, index, config.class_weight_method,
                                          config.class_weight_max_ratio)
    sampling_weights = class_weights_for_index(index, method=config.class_weight_method,
                                               max_ratio=config.class_weight_max_ratio)

    source = load_source(config.weights, config.weights_names) if config.weights and checkpoint is None else None
    model_config = _model_config(config, len(names), source, checkpoint)
    model = Detector(model_config)
    if checkpoint is not None:  # before load_state_dict, whose shape errors are tracebacks naming no file
        _check_resumable(checkpoint, model, index.config.yaml_path, resume_dir)
    class_mapping = None
    if source is not None:
        class_mapping = transfer(source[0], source[1], model, names)
        if rank == 0:
            console.print(f"initialised from {config.weights} ({source[2]}, {len(source[1])} classes); "
                          f"{class_mapping.summary()}", markup=False, highlight=False, soft_wrap=True)
    freeze_layers = freeze_layer_count(config.freeze)
    if config.freeze_epochs and world_size > 1:
        raise DoctorError("--freeze-epochs with several GPUs is not supported (DDP fixes the trained parameters "
                          "when it starts); freeze for the whole run, or train on one device")
    set_frozen(model, active_freeze(freeze_layers, config.freeze_epochs, 0 if checkpoint is None
                                    else int(checkpoint["epoch"]) + 1))
    model.to(device.device)
    # NHWC everywhere: cuDNN uses tensor-core kernels without transposes, and on CPU oneDNN's NHWC convolutions
    # made a training step of the n model 1.18x faster at 320 (bench/README.md, training profile, issue 22).
    model.to(memory_format=torch.channels_last)
    if config.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ModelEMA(model, decay=config.ema_decay) if config.ema else None
    loss = DetectionLoss.for_model(unwrap(model), LossConfig(class_weights=class_weights.weights,
                                                             focal_gamma=config.focal_gamma)).to(device.device)
    if world_size > 1:
        device_ids = [device.device.index] if device.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        loss.average_normalizer_across_ranks = True
    # --compile: the DDP wrapper when distributed (torch: DDP first, then compile); run.model itself stays
    # uncompiled, so checkpoint keys and the EMA are those of a run without --compile (trainer/compiled.py).
    train_forward = None
    if config.compile:
        def say(message: str) -> None:
            if rank == 0:
                console.print(message, markup=False, highlight=False)
        train_forward = CompiledForward(model, log=say)

    if config.batch % world_size:
        raise DoctorError(f"--batch {config.batch} does not split evenly over {world_size} devices")
    warn = _warner(console, rank)
    replay_index = replay = None
    if config.replay:
        replay_index = _rank_zero_first(lambda: build_index(load_data_yaml(config.replay), progress=rank == 0),
                                        world_size, rank)
        replay = remap_replay(select_images(replay_index, "train", warn, max_pixels=data_config.max_pixels),
                              list(replay_index.names), names)
        if rank == 0:
            console.print(f"replay: {len(replay)} train images of {config.replay}, {config.replay_ratio:.0%} of "
                          "every epoch's draws", markup=False, highlight=False, soft_wrap=True)
    train_loader = build_train_loader(index, data_config, settings.augment, config.batch // world_size,
                                      epochs=config.epochs, seed=config.seed, class_weights=sampling_weights.weights,
                                      rank=rank, world_size=world_size, device=device.device,
                                      log=(lambda m: console.print(m)) if rank == 0 else (lambda m: None), warn=warn,
                                      replay=replay, replay_ratio=config.replay_ratio)
    val_loader = train_eval_loader = None
    positions: list[int] = []
    if rank == 0:  # only rank 0 evaluates
        val_loader = make_eval_loader(_eval_dataset(index, "val", data_config, warn), config.batch,
                                      data_config.workers, device.device)
        train_dataset = train_loader.dataset
        new_images = len(train_dataset) - (len(replay) if replay is not None else 0)  # replays come last
        subset_size = min(config.train_eval_images, len(val_loader.dataset), new_images)
        positions = sorted(np.random.default_rng(config.seed).choice(new_images, subset_size,
                                                                     replace=False).tolist())
        train_eval_loader = make_eval_loader(train_dataset.view(positions), config.batch, data_config.workers,
                                             device.device)

    iterations = len(train_loader)
    optimizer_name, lr0 = choose_optimizer(config.optimizer, iterations * config.epochs, config.lr0)
    if config.weights and config.lr0 is None:  # fine-tuning: a lower rate so learnt features survive
        lr0 *= FINETUNE_LR_FACTOR
    warmup_epochs = config.warmup_epochs if config.warmup_epochs is not None else (
        FINETUNE_WARMUP_EPOCHS if config.weights else SCRATCH_WARMUP_EPOCHS)
    accumulation = Accumulation(config.batch, config.nbs)
    optimizer = build_optimizer(model, optimizer_name, lr0, config.momentum,
                                accumulation.weight_decay(config.weight_decay))
    schedule = Schedule(lr0=lr0, lrf=config.lrf, epochs=config.epochs, iterations_per_epoch=iterations,
                        warmup_epochs=warmup_epochs, warmup_bias_lr=config.warmup_bias_lr,
                        warmup_momentum=config.warmup_momentum, momentum=config.momentum, cosine=config.cos_lr)
    scaler = torch.amp.GradScaler("cuda", enabled=device.needs_grad_scaler)

    run_path = resume_dir if resume_dir is not None else run_dir if run_dir is not None else _new_run_dir(config, rank)
    run = Run(settings, run_path, console, device, index, class_weights, sampling_weights, model, ema, loss,
              optimizer, optimizer_name, scaler, schedule, train_loader, val_loader, train_eval_loader, positions,
              rank=rank, world_size=world_size, freeze_layers=freeze_layers, replay_index=replay_index,
              train_forward=train_forward)
    if rank == 0:  # a resumed (or reused) run directory may hold what a killed checkpoint write left
        for message in files.remove_stale_checkpoint_temporaries(run.dir):
            console.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)
    if checkpoint is not None:
        _restore(run, checkpoint)
    elif rank == 0:
        files.write_args(run.dir, {**settings.to_dict(), "resolved": {
            "optimizer": optimizer_name, "lr0": lr0, "model": asdict(model_config),
            "dataset": str(index.config.yaml_path), "classes": names, "device": str(device.device),
            "world_size": world_size, "amp": str(device.amp_dtype).replace("torch.", "") if device.amp_dtype else None,
            "sampler_weights_method": sampling_weights.method, "warmup_epochs": warmup_epochs,
            "freeze_layers": freeze_layers, "frozen_modules": frozen_prefixes(freeze_layers),
            "weights_classes": class_mapping.to_json_dict() if class_mapping is not None else None,
            "iterations_per_epoch": iterations, "train_images": new_images,
            "replay_images": len(replay) if replay is not None else 0,
            "accumulate": accumulation.steps, "effective_batch": accumulation.effective_batch,
            "weight_decay": accumulation.weight_decay(config.weight_decay),
            "train_eval_images": len(positions),
        }})
        files.write_json(run.dir, files.CLASS_WEIGHTS_FILE, class_weights.to_json_dict())
        if config.save_batches:
            save_batches(train_loader, names, run.dir / files.TRAIN_BATCHES_DIR, count=config.save_batches)
    if rank == 0:
        run.print(model_summary(unwrap(model), data_config.imgsz))
    return run


_RESUME_KEYS = ("model", "optimizer", "epoch", "best_fitness", "best_epoch", "stale_evaluations", "elapsed", "rng",
                "results_row")


def _require_resume_state(checkpoint: dict, run_dir: Path) -> None:
    """A checkpoint lacking what --resume restores (a hand-made or truncated one) is one line, not a KeyError."""
    missing = [key for key in _RESUME_KEYS if key not in checkpoint]
    if missing:
        raise DoctorError(f"cannot resume run {run_dir}: the checkpoint lacks {', '.join(missing)}",
                          run_dir / files.LAST_CHECKPOINT)


def _check_resumable(checkpoint: dict, model: Detector, data_yaml: Path, run_dir: Path) -> None:
    """Refuse a checkpoint of another model shape, saying what differs: the class count (data.yaml's names
    changed since the run started, or last.pt was copied from another run), the scale, or any other tensor."""
    saved = checkpoint.get("model_config") if isinstance(checkpoint.get("model_config"), dict) else {}
    differences = []
    saved_classes = saved.get("num_classes", len(checkpoint.get("names") or []) or None)
    if saved_classes is not None and saved_classes != model.config.num_classes:
        differences.append(f"checkpoint has {saved_classes} classes, this run {model.config.num_classes} "
                           f"(the names in {data_yaml})")
    if saved.get("scale") is not None and saved.get("scale") != model.config.scale:
        differences.append(f"checkpoint scale {saved['scale']}, this run {model.config.scale}")
    if not differences:
        differences = _state_differences(checkpoint["model"], model.state_dict())
    if differences:
        raise DoctorError(f"cannot resume run {run_dir}: {'; '.join(differences)}", run_dir / files.LAST_CHECKPOINT)


def _state_differences(saved: Any, own: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `saved` from loading into a model with state `own`: missing, extra or reshaped tensors."""
    if not isinstance(saved, dict):
        return ["the checkpoint holds no model state"]
    missing = [key for key in own if key not in saved]
    extra = [key for key in saved if key not in own]
    reshaped = [key for key in own if key in saved and (not isinstance(saved[key], torch.Tensor)
                                                         or saved[key].shape != own[key].shape)]
    differences = []
    if missing or extra:
        differences.append(f"{len(missing)} tensors missing and {len(extra)} unknown (e.g. "
                           f"{(missing + extra)[0]})")
    if reshaped:
        key = reshaped[0]
        shape = tuple(saved[key].shape) if isinstance(saved[key], torch.Tensor) else type(saved[key]).__name__
        differences.append(f"{len(reshaped)} tensors of another shape (e.g. {key}: checkpoint {shape}, "
                           f"this run {tuple(own[key].shape)})")
    return differences


def _restore(run: Run, checkpoint: dict) -> None:
    """Continue exactly where the checkpoint left off: weights, EMA, optimizer, scaler, counters, RNG."""
    try:
        unwrap(run.model).load_state_dict(checkpoint["model"])
        if run.ema is not None and checkpoint.get("ema") is not None:
            run.ema.load_state_dict(checkpoint["ema"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            run.scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:  # e.g. optimizer groups of another layout
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DoctorError(f"cannot resume run {run.dir}: the checkpoint does not fit this run ({first_line})",
                          run.dir / files.LAST_CHECKPOINT) from None
    run.start_epoch = int(checkpoint["epoch"]) + 1
    run.best_fitness = float(checkpoint["best_fitness"])
    run.best_epoch = int(checkpoint["best_epoch"])
    run.stale_evaluations = int(checkpoint["stale_evaluations"])
    run.elapsed_before = float(checkpoint["elapsed"])
    restore_rng_states(checkpoint["rng"])
    run.warnings = [str(message) for message in files.read_json(run.dir, files.WARNINGS_FILE) or []]
    run.divergence.warned = bool(run.warnings)  # once per run, resumed or not
    if run.is_main:  # rows after the checkpoint's epoch are trained again; its own row is restored if missing
        files.truncate_results(run.dir, last_epoch=run.start_epoch)
        rows = files.read_results(run.dir)
        if not rows or rows[-1]["epoch"] != run.start_epoch:
            files.append_results_row(run.dir, checkpoint["results_row"])
    if run.start_epoch >= run.settings.train.epochs:
        raise DoctorError(f"this run already finished all {run.settings.train.epochs} epochs", run.dir)


def trained_imgsz(path: str | Path) -> int | None:
    """The --imgsz a checkpoint of ours was trained at (None when it does not say)."""
    try:
        return int(load_checkpoint(path)["settings"]["data"]["imgsz"])
    except (KeyError, TypeError, ValueError):
        return None


def load_model_weights(path: str | Path, device: torch.device | str = "cpu") -> tuple[Detector, list[str]]:
    """A Detector from one of our checkpoints (the EMA weights when saved), with its class names."""
    checkpoint = load_checkpoint(path)
    try:
        model = Detector(ModelConfig(**checkpoint["model_config"]))
        ema = checkpoint.get("ema")
        model.load_state_dict(ema["module"] if ema is not None else checkpoint["model"])
        names = [str(name) for name in checkpoint["names"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a hand-edited or foreign state
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DoctorError(f"checkpoint model state does not load ({type(error).__name__}: {first_line[:200]})",
                          path) from None
    return model.to(device).eval(), names


def _model_config(config: TrainConfig, num_classes: int, source: tuple[Detector, list[str], str] | None,
                  checkpoint: dict | None) -> ModelConfig:
    """The model to build: --model's scale (and P2 level); with --weights the source's head widths (its class
    branch width does not depend on the new class count, so every hidden tensor transfers); on resume the saved
    ones."""
    scale, p2 = parse_model_name(config.model)
    if source is not None:
        saved = source[0].config
        if saved.scale != scale or saved.p2 != p2:
            wanted = saved.scale + ("-p2" if saved.p2 else "")
            raise DoctorError(f"--weights holds a scale-{wanted} model: pass --model {wanted}", config.weights)
        return ModelConfig(scale=scale, num_classes=num_classes, reg_max=saved.reg_max, p2=p2,
                           cls_hidden=saved.cls_hidden or source[0].head.cls_branches[0][-1].in_channels)
    saved_config = checkpoint.get("model_config") if checkpoint is not None else None
    if isinstance(saved_config, dict) and saved_config.get("cls_hidden"):
        return ModelConfig(scale=scale, num_classes=num_classes, reg_max=int(saved_config.get("reg_max", 16)),
                           p2=p2, cls_hidden=int(saved_config["cls_hidden"]))
    return ModelConfig(scale=scale, num_classes=num_classes, p2=p2)


def _rank_zero_first(build, world_size: int, rank: int):
    """Rank 0 builds (and caches) first; the others then find a warm cache instead of all scanning at once."""
    if world_size == 1:
        return build()
    import torch.distributed as dist

    if rank != 0:
        dist.barrier()
    result = build()
    if rank == 0:
        dist.barrier()
    return result


def _eval_dataset(index: DatasetIndex, split: str, data_config, warn):
    from trainer.data.dataset import build_dataset  # the dataset class itself lives with the pipeline

    return build_dataset(index, split, data_config.imgsz, None, cache=data_config.cache, workers=data_config.workers,
                         warn=warn, max_pixels=data_config.max_pixels)


def _new_run_dir(config, rank: int) -> Path:
    if rank != 0:
        raise DoctorError("internal: only rank 0 creates the run directory")
    return files.new_run_dir(config.project, config.name, config.exist_ok)


def _warner(console: Console, rank: int):
    def warn(message: str) -> None:
        if rank == 0:
            console.print(f"[yellow]warning:[/] {message}", highlight=False)

    return warn


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def default_threads(world_size: int = 1) -> int:
    """torch threads per process without --threads: OMP_NUM_THREADS when the user set it (the variable torch and
    every OpenMP program honour, so `OMP_NUM_THREADS=1 doctor train` means one thread), else the cores shared
    among the ranks."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, _cores() // world_size)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1

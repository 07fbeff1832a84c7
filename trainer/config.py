"""Settings of a training run: one dataclass per concern, all recorded in args.yaml.

`TrainSettings` bundles the loop's own `TrainConfig` with the data, augmentation, model and loss settings that
live beside their code. The CLI fills them; `--resume` reads them back from args.yaml, so a resumed run uses
exactly the settings it started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from dataset_doctor.errors import DoctorError
from dataset_doctor.weights import DEFAULT_MAX_RATIO, DEFAULT_METHOD
from trainer.data.config import AugmentConfig, DataConfig

MODEL_SCALES = ("n", "s", "m", "l", "x")
P2_SUFFIX = "-p2"  # `--model n-p2`: the scale with a stride-4 detection level (YOLOv8-p2)
MODEL_NAMES = (*MODEL_SCALES, *(scale + P2_SUFFIX for scale in MODEL_SCALES))


def parse_model_name(name: str) -> tuple[str, bool]:
    """`--model` -> (scale, whether it has the P2 level): "s" -> ("s", False), "s-p2" -> ("s", True)."""
    return (name[: -len(P2_SUFFIX)], True) if name.endswith(P2_SUFFIX) else (name, False)


@dataclass(frozen=True)
class TrainConfig:
    """The training loop's own settings (defaults are what YOLOv8 users know)."""

    data: str = ""  # path to data.yaml
    model: str = "n"  # model scale: n s m l x, or n-p2 ... x-p2 with a stride-4 level for tiny objects
    weights: str | None = None  # initialise from our checkpoint or a YOLOv8 state_dict; classes matched by name
    weights_names: str | None = None  # class names of a YOLOv8 state_dict that holds none (data.yaml or txt)
    freeze: str | None = None  # freeze the first N of YOLOv8's numbered layers, or backbone (10) / neck (22)
    freeze_epochs: int = 0  # unfreeze after this many epochs (0: frozen for the whole run)
    replay: str | None = None  # data.yaml of the base dataset whose images are mixed into every epoch
    replay_ratio: float = 0.25  # share of each epoch's draws that are replay images
    epochs: int = 100  # passes over the (sampled) train split
    batch: int = 16  # total batch size, across all devices
    nbs: int = 0  # nominal batch: accumulate gradients over batches until this many images (0: off)
    optimizer: str = "auto"  # SGD, AdamW, or auto (AdamW for short runs, SGD above 10k iterations)
    lr0: float | None = None  # initial learning rate; None: 0.01 for SGD, 0.001 for AdamW
    lrf: float = 0.01  # final learning rate as a fraction of lr0
    momentum: float = 0.937  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # on conv and linear weights only
    warmup_epochs: float | None = None  # linear warmup length (at least 100 iterations); None: 3, 1 with --weights
    warmup_momentum: float = 0.8  # momentum at the start of warmup
    warmup_bias_lr: float = 0.1  # bias learning rate at the start of warmup
    cos_lr: bool = False  # cosine instead of linear decay
    ema: bool = True  # evaluate and save an exponential moving average of the weights
    ema_decay: float = 0.9999  # its decay (ramped up over the first updates)
    grad_clip: float = 10.0  # max gradient norm (0: no clipping)
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler)
    compile: bool = False  # torch.compile the training forward/backward (speed; compile time paid at the start)
    device: str = ""  # cpu, cuda, 0, or 0,1,2,3 (several GPUs: distributed); "": cuda if available
    seed: int = 0  # seeds sampling, augmentation and initialisation
    deterministic: bool = False  # torch deterministic algorithms (slower; CPU runs are deterministic anyway)
    threads: int | None = None  # torch CPU threads per process; None: the cores available to it
    patience: int = 50  # stop after this many evaluations without a better val mAP50-95 (0: never)
    eval_every: int = 1  # evaluate val and the train subset every N epochs (and always at the end)
    train_eval_images: int = 500  # fixed train subset evaluated like val: min(this, number of val images)
    conf: float = 0.001  # evaluation: confidence threshold before NMS
    iou: float = 0.7  # evaluation: NMS IoU threshold
    max_det: int = 300  # evaluation: detections kept per image after NMS
    class_weights: str = "auto"  # auto (doctor weights), none, or a JSON file from `doctor weights --json`
    class_weight_method: str = DEFAULT_METHOD  # for auto: inverse, sqrt or effective
    class_weight_max_ratio: float = DEFAULT_MAX_RATIO  # for auto: cap on largest/smallest weight
    focal_gamma: float = 0.0  # focal modulation of the classification loss (0: plain BCE)
    sync_bn: bool = False  # distributed: synchronise BatchNorm statistics across GPUs
    save_batches: int = 3  # augmented training batches saved as pictures at the start
    tensorboard: bool | None = None  # event files in run_dir/tensorboard; None: on when tensorboard is installed
    audit_report: str | None = None  # audit report (HTML or JSON) to link; None: looked for in doctor_reports/
    max_bad_steps: int = 5  # consecutive non-finite losses before the run stops
    project: str = "runs"  # parent directory of run directories
    name: str = "exp"  # run directory name (exp, exp2, ... when taken)
    exist_ok: bool = False  # write into an existing run directory of that name

    def checked(self) -> TrainConfig:
        _require(self.model in MODEL_NAMES, f"--model must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        _require(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        _require(self.batch >= 1, f"--batch must be >= 1, got {self.batch}")
        _require(self.nbs >= 0, f"--nbs must be >= 0 (0: off), got {self.nbs}")
        _require(self.lr0 is None or self.lr0 > 0, f"--lr0 must be > 0, got {self.lr0}")
        _require(0 < self.lrf <= 1, f"--lrf must be in (0, 1], got {self.lrf}")
        _require(self.eval_every >= 1, f"--eval-every must be >= 1, got {self.eval_every}")
        _require(self.patience >= 0, f"--patience must be >= 0, got {self.patience}")
        _require(0 <= self.conf < 1 and 0 < self.iou <= 1, "--conf must be in [0, 1) and --iou in (0, 1]")
        _require(self.focal_gamma >= 0, f"--focal-gamma must be >= 0, got {self.focal_gamma}")
        _require(self.max_bad_steps >= 1, "max_bad_steps must be >= 1")
        _require(self.freeze_epochs >= 0, f"--freeze-epochs must be >= 0, got {self.freeze_epochs}")
        _require(not self.freeze_epochs or bool(self.freeze), "--freeze-epochs needs --freeze")
        _require(0 < self.replay_ratio < 1, f"--replay-ratio must be in (0, 1), got {self.replay_ratio}")
        _require(not self.replay or bool(self.weights), "--replay needs --weights (the model trained on it)")
        return self


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run was started with; args.yaml is `to_dict()`."""

    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"train": asdict(self.train), "data": asdict(self.data), "augment": asdict(self.augment)}

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> TrainSettings:
        """Rebuild from args.yaml, ignoring keys this version does not know (older/newer runs stay resumable)."""
        def build(kind: type, values: dict[str, Any] | None) -> Any:
            known = {f.name for f in fields(kind)}
            return kind(**{key: value for key, value in (values or {}).items() if key in known})

        return TrainSettings(build(TrainConfig, raw.get("train")), build(DataConfig, raw.get("data")),
                             build(AugmentConfig, raw.get("augment")))

    def with_train(self, **changes: Any) -> TrainSettings:
        return replace(self, train=replace(self.train, **changes))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DoctorError(message)


# AdamW's default lr for the classifier, lower than the detector's 0.001: on the classification sample (1,511
# train images, crops of at least 70% of the area, 15 epochs at 64, one seed) the n classifier reached val top-1
# 0.40 at 0.001 and 0.57 at 0.0005 (bench/README.md "Classifier")
CLASSIFY_ADAMW_LR = 0.0005


@dataclass
class ClassifyConfig:
    """A classifier training run (trainer/classify_loop.py) on a folder-per-class dataset; args.yaml records it."""

    data: str = ""  # the dataset root (ROOT/train/<class>/*.jpg), or its data.yaml
    model: str = "n"  # classifier scale: n s m l x (trainer/model/classifier.py)
    epochs: int = 30
    imgsz: int = 224  # training and evaluation size (square), YOLOv5-cls's default
    batch: int = 32
    optimizer: str = "auto"  # SGD, AdamW, or auto (SGD for long runs, AdamW for short ones: trainer/optim.py)
    lr0: float | None = None  # initial learning rate (default per optimizer: SGD 0.01, AdamW CLASSIFY_ADAMW_LR)
    lrf: float = 0.01  # final learning rate as a fraction of lr0 (cosine decay)
    momentum: float = 0.9  # SGD momentum / Adam beta1
    weight_decay: float = 5e-5  # YOLOv5-cls's default
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1  # cross-entropy label smoothing (Szegedy et al. 2016)
    class_weights: str = "none"  # none, or auto: inverse-frequency weights of the train images (doctor weights)
    sampler: str = "uniform"  # uniform, or balanced: draw images with probability ~ their class weight
    dropout: float = 0.0  # before the head's linear layer
    ema: bool = True  # evaluate and save an exponential moving average of the weights
    augment: bool = True  # random resized crop, horizontal flip, HSV jitter (albumentations)
    # random resized crop: smallest area fraction kept. Inception's 0.08 is for ImageNet-sized data; from scratch
    # on the classification sample (1,511 train images, 15 epochs at 64) 0.35 and 0.5 left the n classifier at
    # the class prior and 0.7 reached val top-1 0.57 (bench/README.md "Classifier")
    crop_scale: float = 0.7
    fliplr: float = 0.5  # horizontal flip probability
    hsv_h: float = 0.015  # hue jitter, fraction of the hue circle
    hsv_s: float = 0.7  # saturation jitter, fraction
    hsv_v: float = 0.4  # value jitter, fraction
    randaugment: int = 0  # RandAugment-style ops per training image, drawn from albumentations ones (0: off)
    randaugment_magnitude: int = 9  # their strength, 0..10 (timm's scale)
    cache: str = "none"  # "ram": keep decoded (and, when large, shrunk) images in memory
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler); no-op on CPU
    train_eval_images: int = 500  # fixed train subset evaluated like val every epoch (train vs val accuracy)
    precise_bn_batches: int = 4  # before each evaluation, BatchNorm statistics recomputed on this many batches
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    device: str = "cpu"
    project: str = "runs/classify"
    name: str = "exp"
    exist_ok: bool = False

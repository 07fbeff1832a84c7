"""`doctor train data.yaml`: train the built-in YOLO detector with class weights applied automatically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError
from trainer.config import CLASSIFY_ADAMW_LR, ClassifyConfig, TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig

_T, _D, _A = TrainConfig(), DataConfig(), AugmentConfig()


@app.command(rich_help_panel="Train and evaluate")
def train(
    data: Annotated[Path | None, typer.Argument(help="data.yaml of the dataset (not needed with --resume).")] = None,
    model: Annotated[str, typer.Option(help="Model scale: n s m l x; n-p2 ... x-p2 add a "
                                            "stride-4 level for tiny objects.")] = _T.model,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = _T.epochs,
    imgsz: Annotated[int | None, typer.Option(help=f"Input size (rounded up to a multiple of 32) [default: "
                                                   f"{_D.imgsz}, 224 for a classifier].", show_default=False)] = None,
    task: Annotated[str | None, typer.Option(help="classify (a folder-per-class dataset: trains the YOLO "
                                                  "classifier) or detect; default: detected from the layout.")]
    = None,
    batch: Annotated[int, typer.Option(min=1, help="Total batch size (split over GPUs).")] = _T.batch,
    nbs: Annotated[int, typer.Option(min=0, help="Nominal batch: accumulate gradients over batches until this "
                                               "many images per step, weight decay scaled to match (0: off).")]
    = _T.nbs,
    device: Annotated[str, typer.Option(help="cpu, cuda, 0, or 0,1,2,3 for several GPUs. Default: cuda if "
                                             "available.")] = _T.device,
    project: Annotated[Path, typer.Option(help="Parent directory of run directories.")] = Path(_T.project),
    name: Annotated[str, typer.Option(help="Run name (exp, exp2, ... when taken).")] = _T.name,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Reuse project/name if it exists.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed run from RUN_DIR/weights/last.pt "
                                                     "(no other argument needed).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Fine-tune from one of our checkpoints or a YOLOv8 state_dict "
                                                      "(README: 'Start from trained weights'); classes matched by "
                                                      "name. Lowers the default lr0 to a tenth and warmup to 1 "
                                                      "epoch.")] = None,
    weights_names: Annotated[Path | None, typer.Option(help="Class names of a --weights state_dict that holds "
                                                            "none: a data.yaml or one name per line.")] = None,
    freeze: Annotated[str | None, typer.Option(help="Freeze the first N YOLOv8 layers, or backbone (10) or neck "
                                                    "(22); BatchNorm statistics frozen too.")] = None,
    freeze_epochs: Annotated[int, typer.Option(min=0, help="Unfreeze after K epochs (0: the whole run).")] = 0,
    replay: Annotated[Path | None, typer.Option(help="data.yaml of the base dataset: its train images are mixed "
                                                     "into every epoch (against forgetting).")] = None,
    replay_ratio: Annotated[float, typer.Option(help="Share of each epoch's images drawn from --replay.")]
    = _T.replay_ratio,
    class_weights: Annotated[str, typer.Option(help="auto (doctor weights), none, or a doctor weights --json "
                                                    "file.")] = _T.class_weights,
    class_weight_method: Annotated[str, typer.Option(help="auto weights: inverse, sqrt or effective.")]
    = _T.class_weight_method,
    max_ratio: Annotated[float, typer.Option(help="auto weights: cap on largest/smallest weight.")]
    = _T.class_weight_max_ratio,
    focal_gamma: Annotated[float, typer.Option(help="Focal term of the classification loss (0: off).")]
    = _T.focal_gamma,
    sampler: Annotated[str, typer.Option(help="uniform, or balanced: draw images by their boxes' class "
                                              "weights.")] = _D.sampler,
    optimizer: Annotated[str, typer.Option(help="SGD, AdamW or auto (by run length).")] = _T.optimizer,
    lr0: Annotated[float | None, typer.Option(help="Initial learning rate (default: 0.01 SGD, 0.001 AdamW, "
                                                   f"{CLASSIFY_ADAMW_LR:g} AdamW for a classifier; a tenth of that "
                                                   "with --weights).")]
    = None,
    lrf: Annotated[float, typer.Option(help="Final learning rate, fraction of lr0.")] = _T.lrf,
    momentum: Annotated[float, typer.Option(help="SGD momentum / AdamW beta1.")] = _T.momentum,
    weight_decay: Annotated[float, typer.Option(help="Weight decay of conv weights.")] = _T.weight_decay,
    warmup_epochs: Annotated[float | None, typer.Option(help="Warmup epochs (default 3; 1 with --weights).")]
    = None,
    cos_lr: Annotated[bool, typer.Option("--cos-lr", help="Cosine learning-rate decay (default linear).")] = False,
    close_mosaic: Annotated[int, typer.Option(help="No mosaic in the last N epochs.")] = _A.close_mosaic,
    mosaic: Annotated[float, typer.Option(help="Mosaic probability.")] = _A.mosaic,
    fliplr: Annotated[float, typer.Option(help="Horizontal flip probability.")] = _A.fliplr,
    scale: Annotated[float, typer.Option(help="Random zoom +/- this.")] = _A.scale,
    copy_paste: Annotated[float, typer.Option(help="Probability per image (each mosaic tile) of pasting one box "
                                                   "of another train image into it, rare classes favoured by "
                                                   "class weight; 0: off. On by default: with class weights it "
                                                   "beat weights alone in every seed measured.")]
    = _A.copy_paste,
    randaugment: Annotated[int, typer.Option(min=0, help="Classifier: RandAugment-style ops per training image "
                                                         "(albumentations: rotate, shear, colour, posterize, "
                                                         "solarize...); 0: off.")] = 0,
    randaugment_magnitude: Annotated[int, typer.Option(min=0, max=10, help="Classifier: strength of the "
                                                                           "--randaugment ops, 0..10.")] = 9,
    crop_scale: Annotated[float | None, typer.Option(min=0.01, max=1.0, help="Classifier: smallest area fraction "
                                                     f"a random resized crop keeps (default "
                                                     f"{ClassifyConfig.crop_scale:g}; Inception's 0.08 suits "
                                                     "ImageNet-sized data).")] = None,
    multi_scale: Annotated[bool, typer.Option("--multi-scale", help="Random input size per batch, "
                                                                    "imgsz +/- 50%.")] = False,
    cache: Annotated[str, typer.Option(help="none, or ram: keep decoded images in memory.")] = _D.cache,
    workers: Annotated[int | None, typer.Option(help="Data loader processes (default: min(8, cores)).")] = None,
    max_pixels: Annotated[int, typer.Option(help="Images with more pixels decode at 1/2..1/8 size (JPEG) or are "
                                                 "skipped with a warning.")] = _D.max_pixels,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _T.seed,
    patience: Annotated[int, typer.Option(help="Stop after N evaluations without a better val mAP50-95 "
                                               "(0: never).")] = _T.patience,
    eval_every: Annotated[int, typer.Option(min=1, help="Evaluate val and the train subset every N epochs.")]
    = _T.eval_every,
    amp: Annotated[bool, typer.Option(help="Mixed precision on CUDA.")] = _T.amp,
    compile: Annotated[bool, typer.Option("--compile", help="Speed option: run the training forward and backward "
                                                            "through torch.compile (inductor; CPU needs a C++ "
                                                            "compiler). Compile time is paid once at the start "
                                                            "(and once more at the first new input size); on CPU "
                                                            "it measured no faster (bench/README.md). Checkpoints "
                                                            "are unchanged.")]
    = _T.compile,
    ema: Annotated[bool, typer.Option(help="Keep an EMA of the weights (evaluated and saved).")] = _T.ema,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="Several GPUs: synchronised BatchNorm.")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: all cores).")] = None,
    audit_report: Annotated[Path | None, typer.Option(help="Audit report (HTML or JSON) to link from the training "
                                                           "report (default: looked for in doctor_reports/).")]
    = None,
    tensorboard: Annotated[bool | None, typer.Option("--tensorboard/--no-tensorboard",
                                                     help="TensorBoard event files in RUN_DIR/tensorboard "
                                                          "(default: on when tensorboard is installed).")] = None,
    live_report: Annotated[bool, typer.Option("--live-report/--no-live-report",
                                              help="Rewrite report.html after every evaluation, with a "
                                                   "progress banner.")] = True,
) -> None:
    """Train the built-in YOLO detector (YOLOv8-style) on a dataset, class weights applied automatically."""
    from dataset_doctor.cli.classify_commands import is_classify_run, train_classify
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, detect_task
    from trainer.launch import launch_training  # torch loads only when a command needs it
    from trainer.monitor import wants_tensorboard

    wants_tensorboard(tensorboard)  # asked for and not installed: one line before any run directory exists
    hook = _live_report_hook() if live_report and int(os.environ.get("RANK", "0")) == 0 else None
    if resume is not None and is_classify_run(resume):
        train_classify({}, resume)
        return
    if resume is None and data is not None:
        detected, why = detect_task(data, task)
        if detected == TASK_CLASSIFY:
            if compile:
                raise DoctorError("--compile is a detector option: the classifier trains without it")
            if int(os.environ.get("RANK", "0")) == 0:
                console.print(why, highlight=False, markup=False)
            options = {
                "data": str(data), "model": model, "epochs": epochs, "imgsz": imgsz or 224, "batch": batch,
                "optimizer": optimizer, "lr0": lr0, "lrf": lrf, "momentum": momentum, "weight_decay": weight_decay,
                "warmup_epochs": warmup_epochs, "class_weights": class_weights, "sampler": sampler, "ema": ema,
                "fliplr": fliplr, "seed": seed, "workers": workers or 0, "device": device or "cpu",
                "cache": cache, "amp": amp, "randaugment": randaugment,
                "randaugment_magnitude": randaugment_magnitude, "crop_scale": crop_scale,
                "project": str(project), "name": name, "exist_ok": exist_ok}
            # options left unset (None: the detector's fine-tuning-aware defaults) take the classifier's own
            train_classify({key: value for key, value in options.items() if value is not None}, None)
            return
    if randaugment or crop_scale is not None:
        flag = "--randaugment" if randaugment else "--crop-scale"
        raise DoctorError(f"{flag} is a classifier option (folder-per-class datasets); the detector's "
                          "augmentation is --mosaic, --scale, --fliplr, --copy-paste")
    imgsz = imgsz if imgsz is not None else _D.imgsz
    if resume is not None:
        run_dir = launch_training(None, resume=resume, console=console, on_evaluation=hook)
    else:
        if data is None:
            raise DoctorError("give a data.yaml to train on, or --resume RUN_DIR")
        settings = detection_settings(locals())  # every option by its parameter name
        run_dir = launch_training(settings, console=console, on_evaluation=hook)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every process runs this command
        from reports.training_report import write_training_report  # plotly loads only now

        write_training_report(run_dir, console)
        console.print(f"results in [bold]{run_dir}[/]")


def _live_report_hook():
    """trainer.loop's on_evaluation: say where report.html will be at the start, rewrite it (with the progress
    banner and a refresh) after every evaluation. The final write after training drops the banner."""
    def on_evaluation(run_dir: Path, progress: dict) -> None:
        from reports.training_report import write_live_report  # plotly loads only now

        if progress["eta_s"] is None:
            console.print(f"live report (rewritten after every evaluation): [bold]{run_dir / 'report.html'}[/]")
            return
        write_live_report(run_dir, progress, console)

    return on_evaluation


def detection_settings(options: Mapping[str, Any]) -> TrainSettings:
    """The run's settings from `doctor train`'s option values, keyed by parameter name (imgsz resolved): what
    train() starts, and what `doctor crossval` gives each fold (it takes every doctor train option)."""
    def path(name: str) -> str | None:
        return str(options[name]) if options[name] else None

    o = options
    return TrainSettings(
        TrainConfig(data=str(o["data"]), model=o["model"], weights=path("weights"), weights_names=path("weights_names"),
                    freeze=o["freeze"], freeze_epochs=o["freeze_epochs"], replay=path("replay"),
                    replay_ratio=o["replay_ratio"], epochs=o["epochs"], batch=o["batch"], nbs=o["nbs"],
                    optimizer=o["optimizer"], lr0=o["lr0"], lrf=o["lrf"], momentum=o["momentum"],
                    weight_decay=o["weight_decay"], warmup_epochs=o["warmup_epochs"], cos_lr=o["cos_lr"],
                    ema=o["ema"], amp=o["amp"], compile=o["compile"], device=o["device"], seed=o["seed"],
                    threads=o["threads"], patience=o["patience"], eval_every=o["eval_every"],
                    class_weights=o["class_weights"],
                    class_weight_method=o["class_weight_method"], class_weight_max_ratio=o["max_ratio"],
                    focal_gamma=o["focal_gamma"], sync_bn=o["sync_bn"], project=str(o["project"]), name=o["name"],
                    exist_ok=o["exist_ok"], audit_report=path("audit_report"), tensorboard=o["tensorboard"]),
        DataConfig(imgsz=o["imgsz"] if o["imgsz"] is not None else _D.imgsz, multi_scale=o["multi_scale"],
                   cache=o["cache"], workers=o["workers"], sampler=o["sampler"], max_pixels=o["max_pixels"]),
        AugmentConfig(mosaic=o["mosaic"], close_mosaic=o["close_mosaic"], fliplr=o["fliplr"], scale=o["scale"],
                      copy_paste=o["copy_paste"]),
    )

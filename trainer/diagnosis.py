"""What a training run's numbers mean: the diagnosis rules of design.md section 5, made automatic.

The Darknet training manual (AlexeyAB/darknet, "When should I stop training" and "How to improve object
detection") reads a run by comparing AP on the training images with AP on validation images measured the same
way (our trainer evaluates a fixed train subset exactly like val):
- high train AP, high val AP -> fine; if real-world results are poor, the data is not representative;
- high train AP, low val AP -> train and val differ: overfitting, or a distribution shift (box sizes,
  viewpoints, backgrounds);
- low train AP, low val AP -> labels likely wrong or too few, or the model too small / undertrained.
Plus: a class whose val AP cannot be measured, too few instances per class, and the rule-of-thumb training
length (Darknet: `max_batches = classes * 2000`, but not less than the number of training images and not less
than 6000).

Everything here is pure: per-class numbers and run facts in, `RunFinding`s with a level and concrete next steps
out. The report (reports/training_report.py) gathers the numbers from the run directory and shows the result.

What "high" and "low" mean. An AP is judged on AP50 (the metric of the Darknet manual; AP50-95 is shown beside
it) in two ways, so that the rules make sense both for a 5-minute CPU run and for a real one:
- absolutely: AP50 >= HIGH_AP50 is high whatever the run;
- relative to the run's best class: when the best class reaches at least REFERENCE_FLOOR on train, a class
  within RELATIVE_HIGH of that best train AP50 is learnt "as well as this run learns anything", so it counts as
  high too. Below REFERENCE_FLOOR the run has learnt too little for classes to be compared: then the cause is
  the run (too short, model too small), and per-class findings say so instead of blaming each class.
Val is "low" for a class when it falls clearly below that class's own train AP: by at least MIN_GAP in absolute
terms *and* by at least GAP_FRACTION of the train AP (the first guards noise on small val sets, the second
keeps a 0.95 -> 0.85 drop from counting as a failure).
"""

from __future__ import annotations

import functools
import math
import shlex
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dataset_doctor.findings import NextStep
from dataset_doctor.rebalance import (
    COPY_PASTE_EVIDENCE,
    LONGER_TRAINING_FACTOR,
    PASTE_OVER_ONLINE_EVIDENCE,
    PASTE_REBALANCE_EVIDENCE,
    SUGGESTED_COPY_PASTE,
    TRAIN_LONGER_EVIDENCE,
)
from trainer.config import P2_SUFFIX, parse_model_name
from trainer.data.config import DataConfig

# --- thresholds (AP values are AP50 in [0, 1]) ---------------------------------------------------------------
# At or above this a class is found well enough to be useful in most applications; small YOLO models average
# about this on COCO's 80 classes, and custom datasets that train well usually reach 0.6-0.9.
HIGH_AP50 = 0.5
# Below this on val a class is practically not detected (a detector that finds 1 object in 10).
FAILING_AP50 = 0.1
# The run's best class must reach this on train before classes are compared with each other: below it,
# differences between classes are mostly noise of a model that has barely started learning.
REFERENCE_FLOOR = 0.3
# A class within this fraction of the run's best train AP50 is learnt as well as the run learns anything.
RELATIVE_HIGH = 0.8
# A class below this fraction of the best train AP50 "lags": the model learns the others but not this one.
LAGGING_FRACTION = 0.5
# Val is low against train when it is lower by at least MIN_GAP (the AP of a class with ~20 val boxes moves by
# about 0.1 when two boxes change) and by at least GAP_FRACTION of the train AP.
MIN_GAP = 0.15
GAP_FRACTION = 0.25
# The audit's few-instances default (design.md section 2): fewer train boxes than this is too few to learn
# a class reliably.
MIN_INSTANCES = 100
# The Darknet manual's "desirable" number of training images per class: the cap of suggested rebalance targets.
RECOMMENDED_INSTANCES = 2000
# Val AP resting on fewer boxes than this is noisy (one box is more than 5% of recall): said, not judged.
NOISY_VAL_INSTANCES = 20
# Darknet's max_batches rule: 2000 iterations per class, at least 6000, at least one per training image.
ITERATIONS_PER_CLASS = 2000
MIN_ITERATIONS = 6000
# Curves: val mAP50-95 that ended this fraction below its best while train kept rising is overfitting;
# the best epoch being the last evaluation, with val still gaining this fraction over the last quarter of the
# run, means training stopped while still improving.
OVERFIT_DROP = 0.1
STILL_RISING_GAIN = 0.05
# A class weighted this many times the median class weight, whose val precision is below LOW_PRECISION_RATIO
# of its recall, is probably pushed to be predicted too often (weights, sampler and copies compound).
OVERBOOST_WEIGHT_RATIO = 3.0
LOW_PRECISION_RATIO = 0.5

LEVELS = ("good", "info", "warning", "error")  # increasing severity
OVERALL = ""  # RunFinding.scope of run-level findings


@dataclass(frozen=True)
class RunFinding:
    """One diagnosis: about a class (scope = its name) or the whole run (scope = OVERALL)."""

    scope: str
    level: str  # one of LEVELS
    rule: str  # stable id: fine, train-val-gap, both-low, not-measurable, few-instances, ...
    title: str  # one line, plain words
    detail: str  # the numbers behind it
    next_steps: tuple[NextStep, ...] = ()

    @property
    def severity(self) -> int:
        return LEVELS.index(self.level)


@dataclass(frozen=True)
class ClassNumbers:
    """What the run measured about one class, plus dataset facts that explain it."""

    name: str
    train_instances: int  # boxes in the whole train split the model learnt from (copies of a rebalance included)
    val_instances: int  # boxes in val
    train_ap50: float | None  # on the fixed train subset, measured like val; None: no box of it in the subset
    val_ap50: float | None  # None: no val box, cannot be measured
    train_ap50_95: float | None = None
    val_ap50_95: float | None = None
    val_precision: float | None = None
    val_recall: float | None = None
    class_weight: float = 1.0  # in the loss
    size_ratio: float | None = None  # median val box side / median train box side (None: not known)
    confused_with: tuple[str, float] | None = None  # class its val boxes are most often predicted as, and share
    audit_notes: tuple[str, ...] = ()  # the audit's scale-shift findings about this class
    train_subset_instances: int | None = None  # boxes of it in the fixed train subset its train AP rests on


@dataclass(frozen=True)
class RunFacts:
    """How the run was set up and how far it went."""

    dataset: str  # data.yaml the run trained on (used in suggested commands)
    num_classes: int
    epochs_done: int
    epochs_planned: int
    iterations_per_epoch: int
    train_images: int
    model_scale: str = "n"
    class_weights_method: str = "none"  # "none": all classes weigh 1 in the loss
    sampler: str = "uniform"
    rebalanced_from: str | None = None  # source data.yaml when the train split is a `doctor rebalance` copy
    rebalance_target: int | None = None
    rebalance_method: str | None = None  # its --method: images, paste or auto (rebalance.json)
    audit_report: str | None = None  # path of the audit report of this dataset, when one was found
    run_dir: str = "RUN_DIR"  # used in suggested commands
    # the `doctor train` options the run was started with that suggested commands should keep, e.g.
    # (("model", "n"), ("imgsz", "640"), ("epochs", "100")); suggestions change some of them
    train_options: tuple[tuple[str, str], ...] = ()
    zoom: float = 0.5  # the run's scale augmentation (random zoom +/- this)
    copy_paste: float = 0.0  # the run's online copy-paste probability (`doctor train --copy-paste`)
    # evaluated epochs: (epoch, train mAP50-95, val mAP50-95), in order; epochs without evaluation left out
    curve: tuple[tuple[int, float, float], ...] = ()
    # False for another trainer's predictions (`doctor diagnose`): suggested `doctor train` / `doctor val`
    # commands would not apply, so steps keep their text and drop the command
    own_trainer: bool = True

    @property
    def iterations(self) -> int:
        return self.epochs_done * self.iterations_per_epoch

    @property
    def recommended_iterations(self) -> int:
        """Darknet's max_batches: classes * 2000, but at least 6000 and at least the number of train images."""
        return max(ITERATIONS_PER_CLASS * self.num_classes, MIN_ITERATIONS, self.train_images)

    @property
    def is_short(self) -> bool:
        """Fewer iterations than the rule of thumb; False when the training length is unknown (another trainer's
        predictions: iterations_per_epoch 0)."""
        return self.iterations_per_epoch > 0 and self.iterations < self.recommended_iterations

    @property
    def class_weights_on(self) -> bool:
        return self.class_weights_method not in ("", "none")


@dataclass(frozen=True)
class Diagnosis:
    verdict: RunFinding  # the one-line answer at the top of the report
    overall: list[RunFinding]  # run-level findings, most severe first
    # per class, in the order the classes were given (names need not be unique): its findings, most severe first
    per_class: list[list[RunFinding]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def findings_of(self, key: int | str) -> list[RunFinding]:
        """A class's findings by position, or by name (the first class of that name)."""
        return self.per_class[key if isinstance(key, int) else self.names.index(key)]

    def status(self, key: int | str) -> RunFinding | None:
        """The class's main finding (the one the per-class table shows)."""
        found = [f for f in self.findings_of(key) if f.rule in STATUS_RULES]
        return found[0] if found else None


# The short ids `doctor diagnose --json` gives each class's main finding (CI pipelines gate on these).
DIAGNOSIS_IDS = {"fine": "fine", "train-val-gap": "overfitting", "both-low": "labels-or-capacity",
                 "not-measurable": "unmeasurable", "not-in-train-subset": "train-unmeasured",
                 "val-above-train": "val-above-train"}


def diagnosis_id(status: RunFinding | None) -> str:
    """The short id of a class's main finding (Diagnosis.status): fine, overfitting, labels-or-capacity, ..."""
    return DIAGNOSIS_IDS.get(status.rule, status.rule) if status is not None else "unmeasurable"


STATUS_RULES = ("not-measurable", "train-val-gap", "both-low", "fine", "not-in-train-subset", "val-above-train")
STATUS_LABELS = {"not-measurable": "val AP not measurable", "train-val-gap": "train high, val low",
                 "both-low": "train and val low", "fine": "fine", "not-in-train-subset": "train AP not measured",
                 "val-above-train": "val above train"}


# --- levels ------------------------------------------------------------------------------------------------------

def reference_ap(classes: Sequence[ClassNumbers]) -> float:
    """The run's best train AP50 (0 when nothing was measured)."""
    values = [c.train_ap50 for c in classes if _known(c.train_ap50)]
    return max(values) if values else 0.0


def run_has_learnt(reference: float) -> bool:
    """Whether the best class reached REFERENCE_FLOOR on train, so classes can be compared with each other."""
    return reference >= REFERENCE_FLOOR


def is_high(ap50: float, reference: float) -> bool:
    """High absolutely, or close to the run's best class once the run has learnt something."""
    return ap50 >= HIGH_AP50 or (run_has_learnt(reference) and ap50 >= RELATIVE_HIGH * reference)


def val_drops(train_ap50: float, val_ap50: float) -> bool:
    """Val clearly below train: by MIN_GAP absolutely and by GAP_FRACTION of train."""
    return train_ap50 - val_ap50 >= MIN_GAP and val_ap50 <= (1 - GAP_FRACTION) * train_ap50


def suggested_target(train_instances: Sequence[int]) -> int:
    """A `doctor rebalance --target`: the median class count, at least MIN_INSTANCES, at most
    RECOMMENDED_INSTANCES, rounded up to a round number but never above the largest class (a target above every
    class would paste the frequent ones too). The median lifts the rare classes to the middle of the
    distribution without multiplying the dataset the way the largest class's count would."""
    counts = sorted(int(n) for n in train_instances if n > 0)
    median = counts[len(counts) // 2] if counts else MIN_INSTANCES
    target = min(max(median, MIN_INSTANCES), RECOMMENDED_INSTANCES)
    step = 50 if target <= 500 else 100 if target <= 1000 else 500
    rounded = int(math.ceil(target / step) * step)
    return min(rounded, counts[-1]) if counts and counts[-1] >= target else rounded


# --- per class ---------------------------------------------------------------------------------------------------

def diagnose_class(numbers: ClassNumbers, run: RunFacts, reference: float, target: int,
                   median_weight: float = 1.0) -> list[RunFinding]:
    """Every finding about one class, most severe first. reference: the run's best train AP50; target: the
    suggested rebalance target; median_weight: the median class weight of the run."""
    findings = [_main_finding(numbers, run, reference)]
    few = _few_instances(numbers, run, reference, target)
    if few is not None:
        findings.append(few)
    if _known(numbers.val_ap50) and 0 < numbers.val_instances < NOISY_VAL_INSTANCES:
        findings.append(RunFinding(numbers.name, "info", "noisy-val", "val AP rests on few boxes",
                                f"only {numbers.val_instances} val boxes: one box more or less found moves its AP "
                                f"by several points; treat differences under about {MIN_GAP:.2f} as noise.",
                                (NextStep(f"add val images with '{numbers.name}' for a steadier measure"),)))
    boost = _over_boosted(numbers, run, median_weight)
    if boost is not None:
        findings.append(boost)
    return sorted(findings, key=lambda f: -f.severity)


def _main_finding(numbers: ClassNumbers, run: RunFacts, reference: float) -> RunFinding:
    """The section-5 rule that applies: not measurable, fine, train-val gap, or both low."""
    name, train, val = numbers.name, numbers.train_ap50, numbers.val_ap50
    if not _known(val) or numbers.val_instances == 0:
        return RunFinding(name, "warning", "not-measurable", "val AP cannot be measured: no val box",
                       f"'{name}' has {numbers.train_instances} train boxes and none in val, so nothing tells "
                       "whether the model detects it on new images.",
                       (NextStep(f"add val images that contain '{name}' (a few dozen boxes at least)"),
                        NextStep("or re-split the dataset so every class is in val (stratified, leak-free)",
                                 f"doctor split {_quote(run.dataset)} --out {_quote(_sibling(run.dataset, 'split'))}")))
    if not _known(train):
        level = "warning" if not is_high(val, reference) else "info"
        return RunFinding(name, level, "not-in-train-subset", "train AP not measured (no box in the train subset)",
                       f"val AP50 {val:.2f}; the fixed train subset the trainer evaluates holds no '{name}' box, so "
                       "train and val cannot be compared for it.",
                       (NextStep("evaluate the whole train split with the best weights",
                                 f"doctor val {_quote(str(Path(run.run_dir) / 'weights' / 'best.pt'))} "
                                 f"{_quote(run.dataset)} --split train"
                                 + "".join(f" --imgsz {_quote(v)}" for k, v in run.train_options if k == "imgsz")
                                 if run.own_trainer else None),))
    learnt = run_has_learnt(reference)
    if is_high(train, reference):
        if not val_drops(train, val):
            return RunFinding(name, "good", "fine", "fine: high on train and on val",
                           f"train AP50 {train:.2f}, val AP50 {val:.2f}.",
                           (NextStep("if it still fails on real images, the data is not representative of them: add "
                                     "images from where the model is used (cameras, lighting, backgrounds)"),))
        return _train_val_gap(numbers, run, train, val)
    # low on train
    if is_high(val, reference) and val > train:
        boxes = (f" on {numbers.train_subset_instances} train-subset boxes"
                 if numbers.train_subset_instances is not None else "")
        return RunFinding(name, "info", "val-above-train", "higher on val than on train",
                       f"train AP50 {train:.2f}{boxes}, val AP50 {val:.2f} on {numbers.val_instances} val boxes. Val "
                       "easier than train is rare: usually one of the two rests on few boxes (noise), or the train "
                       "images of this class are harder (smaller, occluded) than the val ones.",
                       (NextStep(f"look at a few train images of '{name}': are its labels as good as in val?"),))
    if not learnt:
        return RunFinding(name, "info", "both-low", "low on train and val, like every class of this run",
                       f"train AP50 {train:.2f}, val AP50 {val:.2f}; the best class reaches only {reference:.2f} on "
                       "train, so the run as a whole is undertrained (see the overall diagnosis), not this class.",
                       (NextStep("train longer first (see the overall diagnosis); judge classes afterwards"),))
    short = run.is_short
    level = "error" if val < FAILING_AP50 and not short else "warning"
    lagging = train < LAGGING_FRACTION * reference
    detail = (f"train AP50 {train:.2f}, val AP50 {val:.2f}, while the run's best class reaches {reference:.2f} on "
              f"train: the model {'learns other classes but not this one' if lagging else 'learns this one less'}.")
    steps = [NextStep(f"check the labels of '{name}': wrong class ids, loose, shifted or missing boxes (see the "
                      "audit and the worst val images below)")]
    if numbers.confused_with is not None:
        other, share = numbers.confused_with
        detail += f" {share:.0%} of its val boxes are predicted as '{other}'."
        steps.append(NextStep(f"compare how '{name}' and '{other}' are labelled: the model mixes them up; merge "
                              "them if they are really one class"))
    if numbers.train_instances < MIN_INSTANCES:
        detail += f" It has only {numbers.train_instances} train boxes."
        steps.insert(0, NextStep(f"give the model more examples of '{name}' (see too few instances)"))
    if numbers.size_ratio is not None and not 2 / 3 <= numbers.size_ratio <= 1.5:
        detail += f" Its val boxes also differ in size from its train boxes (median side x{numbers.size_ratio:.2f})."
    if short:
        detail += " The run is also short for its class count (see the overall diagnosis)."
    if not run.is_short:
        steps.append(NextStep(f"or a larger model may learn a hard class better{scale_cost(run)}",
                              _train_command(run, model=_bigger(run))))
    return RunFinding(name, level, "both-low", "low on train and val", detail, tuple(steps))


def _train_val_gap(numbers: ClassNumbers, run: RunFacts, train: float, val: float) -> RunFinding:
    name = numbers.name
    level = "error" if val < FAILING_AP50 else "warning"
    detail = (f"train AP50 {train:.2f} but val AP50 {val:.2f}: the model fits the train images of '{name}' and "
              "not the val ones. Either it memorises them (overfitting) or val looks different (distribution shift).")
    steps = []
    if numbers.size_ratio is not None and not 2 / 3 <= numbers.size_ratio <= 1.5:
        bigger = "larger" if numbers.size_ratio > 1 else "smaller"
        detail += f" Its val boxes are {bigger} than its train boxes (median side x{numbers.size_ratio:.2f})."
        steps.append(NextStep("train on the box sizes val shows: add such images, or widen the zoom augmentation",
                              _train_command(run, scale=round(min(0.9, run.zoom + 0.3), 2))))
    for note in numbers.audit_notes:
        detail += f" Audit: {note}"
    if run.audit_report:
        steps.append(NextStep(f"look at the audit report's scale-shift check and box-size plots of '{name}'"))
    else:
        steps.append(NextStep("run the audit: its scale-shift check compares train and val box sizes per class",
                              f"doctor audit {_quote(run.dataset)}"))
    steps.append(NextStep(f"compare train and val images of '{name}': box sizes, viewpoints, backgrounds, lighting; "
                          "add train images like the val ones"))
    if numbers.train_instances < MIN_INSTANCES:
        steps.append(NextStep(f"only {numbers.train_instances} train boxes: the model can memorise them; collect more "
                              "(see too few instances)"))
    return RunFinding(name, level, "train-val-gap", "train and val differ: high on train, low on val", detail,
                   tuple(steps))


def _few_instances(numbers: ClassNumbers, run: RunFacts, reference: float, target: int) -> RunFinding | None:
    if numbers.train_instances >= MIN_INSTANCES:
        return None
    struggling = not _known(numbers.train_ap50) or not _known(numbers.val_ap50) \
        or not is_high(numbers.train_ap50, reference) or val_drops(numbers.train_ap50, numbers.val_ap50)
    level = "warning" if struggling else "info"
    if numbers.train_instances == 0:
        return RunFinding(numbers.name, "error", "few-instances", "no train box: the model cannot learn it",
                       f"'{numbers.name}' has no usable box in train.",
                       (NextStep(f"label images of '{numbers.name}', or remove it from names"),))
    detail = (f"{numbers.train_instances} train boxes (fewer than {MIN_INSTANCES}; the Darknet manual advises about "
              f"{RECOMMENDED_INSTANCES} per class).")
    if run.rebalanced_from:
        detail += " The train split is already a rebalanced copy: more copies add no new information."
        steps = (NextStep(f"collect and label more real images of '{numbers.name}'"),)
    else:
        steps = (NextStep(f"collect and label more images of '{numbers.name}' (best)"),
                 _train_longer_step(run))
        if run.copy_paste <= 0 and run.own_trainer:  # the default pastes; this run turned it off
            steps += (NextStep(f"and paste boxes of rare classes like '{numbers.name}' into other train images while "
                               f"training, the default this run turned off ({COPY_PASTE_EVIDENCE})",
                               _train_command(run, copy_paste=SUGGESTED_COPY_PASTE)),)
        rebalance = f"doctor rebalance {_quote(run.dataset)} --target {target} --method paste " \
                    f"--out {_quote(_sibling(run.dataset, 'rebalanced'))}"
        if not run.own_trainer:
            steps += (NextStep(f"and paste boxes of rare classes like '{numbers.name}' into other train images, up to "
                               f"{target} boxes per class, in a copy your trainer reads ({PASTE_REBALANCE_EVIDENCE})",
                               rebalance),)
        elif run.copy_paste > 0:  # online pastes already on: a written copy reaches the target for certain
            steps += (NextStep(f"or train on a copy with boxes of rare classes like '{numbers.name}' pasted until "
                               f"every class has {target} ({PASTE_REBALANCE_EVIDENCE}; on the synthetic sample it "
                               f"beat online copy-paste: {PASTE_OVER_ONLINE_EVIDENCE})", rebalance),)
    return RunFinding(numbers.name, level, "few-instances", "too few instances", detail, steps)


def _train_longer_step(run: RunFacts) -> NextStep:
    """Longer training with class weights, the lever that beat image copies of rare classes."""
    epochs = max(run.epochs_planned, 1) * LONGER_TRAINING_FACTOR
    weights = {} if run.class_weights_method != "none" else {"class_weights": "auto"}
    text = (f"or train {LONGER_TRAINING_FACTOR}x longer{' with class weights' if weights else ''} rather than "
            f"oversampling with image copies, whose gain is the extra steps ({TRAIN_LONGER_EVIDENCE})")
    return NextStep(text, _train_command(run, epochs=epochs, **weights))


def _over_boosted(numbers: ClassNumbers, run: RunFacts, median_weight: float) -> RunFinding | None:
    """A heavily weighted class with many false positives: the boost makes the model predict it too often."""
    precision, recall = numbers.val_precision, numbers.val_recall
    if not (_known(precision) and _known(recall)) or recall <= 0 or not run.class_weights_on:
        return None
    if numbers.class_weight < OVERBOOST_WEIGHT_RATIO * median_weight or precision >= LOW_PRECISION_RATIO * recall:
        return None
    return RunFinding(numbers.name, "info", "over-boosted", "many false positives for a heavily weighted class",
                   f"class weight {numbers.class_weight:.2f} ({numbers.class_weight / median_weight:.1f}x the median "
                   f"class's); val precision {precision:.2f} against recall "
                   f"{recall:.2f}: the model predicts '{numbers.name}' where there is none.",
                   (NextStep("soften the class weights", _train_command(run, class_weight_method="sqrt")),))


# --- the run -----------------------------------------------------------------------------------------------------

def diagnose_run(classes: Sequence[ClassNumbers], run: RunFacts) -> Diagnosis:
    """Per-class and run-level findings, and the verdict."""
    reference = reference_ap(classes)
    target = suggested_target([c.train_instances for c in classes])
    median_weight = statistics.median(c.class_weight for c in classes) if classes else 1.0
    per_class = [diagnose_class(c, run, reference, target, median_weight) for c in classes]
    overall = [f for f in (_training_length(classes, run, reference), _fit(classes, run, reference),
                           _curve(run), _compounding(run)) if f is not None]
    overall.sort(key=lambda f: -f.severity)
    return Diagnosis(_verdict(classes, run, reference, per_class, overall), overall, per_class,
                     [c.name for c in classes])


def _training_length(classes: Sequence[ClassNumbers], run: RunFacts, reference: float) -> RunFinding | None:
    needed = run.recommended_iterations
    if run.iterations_per_epoch <= 0 or run.iterations >= needed:
        return None
    epochs = math.ceil(needed / run.iterations_per_epoch)
    good = _mean([c.val_ap50 for c in classes]) >= HIGH_AP50
    level = "info" if good else "warning"
    return RunFinding(OVERALL, level, "short-training", "short training for the class count",
                   f"{run.iterations:,} iterations ({run.epochs_done} epochs x {run.iterations_per_epoch}); the "
                   f"Darknet rule of thumb is at least {needed:,} for {run.num_classes} classes "
                   f"({ITERATIONS_PER_CLASS} per class, at least {MIN_ITERATIONS}, at least one per train image; "
                   "Darknet counts batches of 64 images, so at a smaller batch this is a lower bound).",
                   (NextStep(f"train for about {epochs} epochs", _train_command(run, epochs=epochs)),))


def _fit(classes: Sequence[ClassNumbers], run: RunFacts, reference: float) -> RunFinding | None:
    """The section-5 rules on the whole run (means over the classes measured in both)."""
    both = [c for c in classes if _known(c.train_ap50) and _known(c.val_ap50)]
    if not both:
        return None
    train, val = _mean([c.train_ap50 for c in both]), _mean([c.val_ap50 for c in both])
    numbers = f"mean train AP50 {train:.2f}, mean val AP50 {val:.2f} over {len(both)} classes."
    if train < HIGH_AP50:
        if run.is_short:  # too short: a bigger model would only need longer still
            epochs = math.ceil(run.recommended_iterations / max(run.iterations_per_epoch, 1))
            steps = [NextStep("train longer first: the run is shorter than the rule of thumb",
                              _train_command(run, epochs=epochs))]
        else:
            steps = [NextStep(f"try a larger model{scale_cost(run)}", _train_command(run, model=_bigger(run)))]
        steps.append(NextStep("audit the labels: wrong or inconsistent labels keep even the train AP low",
                              f"doctor audit {_quote(run.dataset)}"))
        level = "error" if val < FAILING_AP50 else "warning"
        return RunFinding(OVERALL, level, "underfit", "the model does not fit its own training images yet",
                       numbers + " Low on train and val: undertrained, a model too small, or labels wrong or too few.",
                       tuple(steps))
    if val_drops(train, val):
        return RunFinding(OVERALL, "warning", "train-val-gap", "train and val differ",
                       numbers + " High on train, clearly lower on val: overfitting or a distribution shift between "
                       "the splits.",
                       (NextStep("see the classes flagged 'train high, val low' and compare their train and val "
                                 "images"),
                        NextStep("re-split so train and val come from the same distribution (stratified, leak-free)",
                                 f"doctor split {_quote(run.dataset)} --out {_quote(_sibling(run.dataset, 'split'))}")))
    return RunFinding(OVERALL, "good", "fine", "train and val agree", numbers +
                   " If the model disappoints on real images, the data is not representative of them.",
                   (NextStep("add images from where the model is used (cameras, lighting, backgrounds)"),))


def _curve(run: RunFacts) -> RunFinding | None:
    """Overfitting or still-improving, read from the val and train mAP50-95 per evaluated epoch."""
    points = [p for p in run.curve if _known(p[1]) and _known(p[2])]
    if len(points) < 3:
        return None
    best = max(range(len(points)), key=lambda i: (points[i][2], -i))  # first best, as best.pt is chosen
    best_epoch, best_train, best_val = points[best]
    last_epoch, last_train, last_val = points[-1]
    if best < len(points) - 1 and best_val > 0 and last_val <= (1 - OVERFIT_DROP) * best_val \
            and last_train >= best_train:
        return RunFinding(OVERALL, "warning", "overfitting", "val peaked and fell while train kept rising",
                       f"val mAP50-95 was {best_val:.3f} at epoch {best_epoch} and {last_val:.3f} at epoch "
                       f"{last_epoch}, while train went from {best_train:.3f} to {last_train:.3f}: the model started "
                       f"memorising the train images. weights/best.pt keeps epoch {best_epoch}.",
                       (NextStep("more (and more varied) training images, or stronger augmentation"),
                        NextStep(f"or stop near epoch {best_epoch}", _train_command(run, epochs=best_epoch))))
    quarter = points[max(0, len(points) - max(2, len(points) // 4))]
    if best == len(points) - 1 and best_val > 0 and best_val >= (1 + STILL_RISING_GAIN) * quarter[2]:
        detail = (f"val mAP50-95 rose from {quarter[2]:.3f} (epoch {quarter[0]}) to {last_val:.3f} (epoch "
                  f"{last_epoch}), the best so far.")
        if run.is_short:  # the training-length finding already says how long
            return RunFinding(OVERALL, "info", "still-improving", "val was still improving when training stopped",
                           detail + " Another sign that the run is too short (see short training).")
        epochs = int(max(run.epochs_planned * 2, run.epochs_done + 10))
        return RunFinding(OVERALL, "info", "still-improving", "val was still improving when training stopped", detail,
                       (NextStep("train longer", _train_command(run, epochs=epochs)),))
    return None


def _compounding(run: RunFacts) -> RunFinding | None:
    """Image copies, a balanced sampler and loss weights each boost rare classes; together they multiply.

    A paste rebalance is not counted: with class weights it was the best lever measured (bench_imbalance (d)),
    and pastes add rare boxes, not repeats of whole pictures.
    """
    on = []
    if run.rebalanced_from and run.rebalance_method != "paste":
        on.append("a rebalanced train set" + (f" (target {run.rebalance_target})" if run.rebalance_target else ""))
    if run.sampler == "balanced":
        on.append("the balanced sampler")
    if run.class_weights_on:
        on.append(f"class weights in the loss ({run.class_weights_method})")
    if len(on) < 2:
        return None
    steps = [NextStep("keep one: e.g. train without loss weights", _train_command(run, class_weights="none"))]
    if run.sampler == "balanced":
        steps.append(NextStep("or with the uniform sampler", _train_command(run, sampler="uniform")))
    return RunFinding(OVERALL, "warning", "compounding", f"{len(on)} rebalancing mechanisms at once",
                   f"{', '.join(on)}: each already boosts rare classes, together they multiply (a class drawn w times "
                   "more often and weighted w times more counts about w^2 times); watch for false positives of rare "
                   "classes (low precision).", tuple(steps))


def _verdict(classes: Sequence[ClassNumbers], run: RunFacts, reference: float, per_class: list[list[RunFinding]],
             overall: list[RunFinding]) -> RunFinding:
    measured = [c.val_ap50 for c in classes if _known(c.val_ap50)]
    # Run-level causes first: training longer or fixing the setup changes every class.
    steps = _top_steps(sorted(overall, key=lambda f: -f.severity)
                       + sorted((f for findings in per_class for f in findings), key=lambda f: -f.severity))
    if not classes:
        return RunFinding(OVERALL, "error", "incomplete", "no per-class results: the run has not finished",
                       "per_class.csv is written when training ends.",
                       (NextStep("resume the run", f"doctor train --resume {_quote(run.run_dir)}"),))
    if not measured:
        return RunFinding(OVERALL, "error", "not-measurable", "nothing can be measured: val has no box",
                       "without val boxes, no AP can be computed.", steps)
    val = _mean(measured)
    attention = [c.name for c, findings in zip(classes, per_class)
                 if any(f.level in ("warning", "error") and f.rule in STATUS_RULES for f in findings)]
    fit = next((f for f in overall if f.rule in ("underfit", "train-val-gap")), None)
    if val < FAILING_AP50:
        cause = " The run is undertrained." if not run_has_learnt(reference) else ""
        return RunFinding(OVERALL, "error", "verdict", f"Not usable yet: val mAP50 {val:.2f}.{cause}",
                       f"Mean val AP50 over {len(measured)} measured classes.", steps)
    if fit is not None or attention or val < HIGH_AP50:
        parts = [f"val mAP50 {val:.2f}"]
        if fit is not None:
            parts.append(fit.title)
        if attention:
            parts.append(f"{len(attention)} of {len(classes)} classes need attention ({_list(attention)})")
        return RunFinding(OVERALL, "warning", "verdict", "Needs work: " + "; ".join(parts) + ".",
                       f"Mean val AP50 over {len(measured)} measured classes.", steps)
    return RunFinding(OVERALL, "good", "verdict", f"Good: val mAP50 {val:.2f}, train and val agree for every class.",
                   f"Mean val AP50 over {len(measured)} measured classes.", steps)


def _top_steps(findings: Sequence[RunFinding], limit: int = 3) -> tuple[NextStep, ...]:
    """The first distinct steps of the most severe non-good findings (commands first seen win)."""
    steps: list[NextStep] = []
    seen: set[str] = set()
    for finding in findings:
        if finding.level == "good":
            continue
        for step in finding.next_steps:
            key = step.command or step.text
            if key not in seen and len(steps) < limit:
                seen.add(key)
                steps.append(step)
    return tuple(steps)


# --- helpers -----------------------------------------------------------------------------------------------------

def _known(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _mean(values: Sequence[float | None]) -> float:
    known = [v for v in values if _known(v)]
    return sum(known) / len(known) if known else float("nan")


def _list(names: Sequence[str], shown: int = 4) -> str:
    quoted = ", ".join(f"'{n}'" for n in names[:shown])
    return quoted + (f" and {len(names) - shown} more" if len(names) > shown else "")


DEFAULT_IMGSZ = DataConfig.imgsz


def _quote(path: str) -> str:
    return shlex.quote(str(path))


def _sibling(dataset: str, suffix: str) -> str:
    """A new dataset folder beside the dataset's own: <root>-<suffix>."""
    root = Path(dataset).parent
    return str(root.with_name(f"{root.name}-{suffix}"))


def _bigger(run: RunFacts) -> str:
    """The next scale up (x stays x), keeping a -p2 suffix: n -> s, s-p2 -> m-p2."""
    scale, p2 = parse_model_name(run.model_scale)
    scales = "nsmlx"
    position = scales.find(scale) if len(scale) == 1 else -1
    bigger = scales[min(position + 1, len(scales) - 1)] if position >= 0 else "s"
    return bigger + (P2_SUFFIX if p2 else "")


def scale_cost(run: RunFacts) -> str:
    """What the suggested scale costs, in numbers, as " (...)": its parameters and GFLOPs at the run's imgsz and
    class count, beside the run's own model (a "larger model" without numbers cannot be weighed against the
    hardware). Empty when the run's model is not one of ours (another trainer's predictions: scale unknown)."""
    mine = run.model_scale
    if parse_model_name(mine)[0] not in "nsmlx" or len(parse_model_name(mine)[0]) != 1:
        return ""
    imgsz = int(dict(run.train_options).get("imgsz", DEFAULT_IMGSZ))
    bigger = _bigger(run)
    own_parameters, own_gflops = model_cost(mine, run.num_classes, imgsz)
    parameters, gflops = model_cost(bigger, run.num_classes, imgsz)
    return (f" (scale {bigger}: {parameters / 1e6:.1f}M parameters and {gflops:.1f} GFLOPs at {imgsz}, "
            f"{gflops / own_gflops:.1f}x the compute of scale {mine} ({own_parameters / 1e6:.1f}M, "
            f"{own_gflops:.1f} GFLOPs))")


@functools.lru_cache(maxsize=32)
def model_cost(model: str, num_classes: int, imgsz: int) -> tuple[int, float]:
    """(parameters, GFLOPs at imgsz) of `--model` for num_classes, built on the meta device (no memory, instant)."""
    import torch  # only when advice needs numbers: the rules themselves are plain Python

    from trainer.model.detector import Detector, ModelConfig, count_gflops, count_parameters

    scale, p2 = parse_model_name(model)
    with torch.device("meta"):
        detector = Detector(ModelConfig(scale=scale, num_classes=max(num_classes, 1), p2=p2))
    return count_parameters(detector), count_gflops(detector, imgsz)


def _train_command(run: RunFacts, **changes: object) -> str | None:
    """`doctor train` on the same dataset with the run's own main options, some changed (None for another
    trainer's predictions: the step's text says what to change)."""
    if not run.own_trainer:
        return None
    options = dict(run.train_options)
    options.update({key.replace("_", "-"): str(value) for key, value in changes.items()})
    flags = " ".join(f"--{key} {_quote(value)}" for key, value in options.items())
    return f"doctor train {_quote(run.dataset)} {flags}".rstrip()

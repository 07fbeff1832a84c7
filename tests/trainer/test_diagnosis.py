"""The diagnosis rules of design.md section 5 on synthetic per-class numbers: one test (or more) per rule."""

from __future__ import annotations

import shlex

import pytest

from trainer.diagnosis import (
    HIGH_AP50,
    MIN_INSTANCES,
    RECOMMENDED_INSTANCES,
    ClassNumbers,
    Diagnosis,
    RunFacts,
    RunFinding,
    diagnose_run,
    diagnosis_id,
    is_high,
    suggested_target,
    val_drops,
)


def numbers(name: str, train: float | None, val: float | None, train_instances: int = 500, val_instances: int = 100,
            **changes) -> ClassNumbers:
    return ClassNumbers(name=name, train_instances=train_instances, val_instances=val_instances, train_ap50=train,
                        val_ap50=val, **changes)


def facts(num_classes: int = 3, **changes) -> RunFacts:
    """A long enough run (100 epochs x 300 iterations) on a dataset of 4,800 train images, unless changed."""
    values = {"dataset": "/data/set/data.yaml", "num_classes": num_classes, "epochs_done": 100, "epochs_planned": 100,
              "iterations_per_epoch": 300, "train_images": 4800, "run_dir": "/runs/exp",
              "train_options": (("model", "n"), ("imgsz", "640"), ("epochs", "100"))}
    values.update(changes)
    return RunFacts(**values)


def rules(findings: list[RunFinding]) -> list[str]:
    return [f.rule for f in findings]


def find(diagnosis: Diagnosis, name: str, rule: str) -> RunFinding:
    found = [f for f in diagnosis.findings_of(name) if f.rule == rule]
    assert found, f"{name}: no {rule} finding in {rules(diagnosis.findings_of(name))}"
    return found[0]


def overall(diagnosis: Diagnosis, rule: str) -> RunFinding | None:
    return next((f for f in diagnosis.overall if f.rule == rule), None)


def commands(finding: RunFinding) -> list[str]:
    return [step.command for step in finding.next_steps if step.command]


# --- levels ------------------------------------------------------------------------------------------------------

def test_high_is_absolute_or_close_to_the_best_class_once_the_run_has_learnt():
    assert is_high(HIGH_AP50, reference=0.0)
    assert not is_high(0.35, reference=0.2)  # the best class is below the floor: no relative comparison
    assert is_high(0.35, reference=0.4)  # within 80% of a best class at 0.4
    assert not is_high(0.3, reference=0.4)


def test_val_drops_needs_an_absolute_and_a_relative_gap():
    assert val_drops(0.9, 0.6)
    assert not val_drops(0.95, 0.85)  # 0.10 lower: within noise and within 25%
    assert not val_drops(0.12, 0.02)  # big relative drop of tiny numbers: noise
    assert val_drops(0.4, 0.2)


@pytest.mark.parametrize(("counts", "target"), [
    ([1000, 500, 200, 50, 10], 200),  # the median class
    ([5000] * 5, RECOMMENDED_INSTANCES),  # capped at the Darknet advice
    ([10, 20, 30], MIN_INSTANCES),  # at least the few-instances threshold, even above every class
    ([700, 760, 900], 800),  # rounded up to a round number
    ([0, 0, 340, 360], 360),  # classes without boxes do not pull the median down
    ([1200, 30], 1200),  # rounded up, but never above the largest class (1500 would paste it too)
])
def test_suggested_rebalance_target(counts, target):
    assert suggested_target(counts) == target


# --- section 5, per class ------------------------------------------------------------------------------------------

def test_high_train_high_val_is_fine_and_says_what_poor_real_world_results_would_mean():
    diagnosis = diagnose_run([numbers("cat", 0.92, 0.88), numbers("dog", 0.85, 0.8), numbers("bird", 0.9, 0.86)],
                             facts())
    for name in ("cat", "dog", "bird"):
        assert diagnosis.status(name).rule == "fine" and diagnosis.status(name).level == "good"
    assert "not representative" in diagnosis.status("cat").next_steps[0].text
    assert overall(diagnosis, "fine").level == "good"
    assert diagnosis.verdict.level == "good" and diagnosis.verdict.title.startswith("Good")


def test_high_train_low_val_is_a_train_val_difference_with_where_to_look():
    diagnosis = diagnose_run([numbers("cat", 0.92, 0.88), numbers("dog", 0.9, 0.45, size_ratio=0.4),
                              numbers("bird", 0.9, 0.05)], facts())
    dog = diagnosis.status("dog")
    assert dog.rule == "train-val-gap" and dog.level == "warning"
    assert "0.90" in dog.detail and "0.45" in dog.detail and "smaller" in dog.detail and "x0.40" in dog.detail
    assert any("--scale 0.8" in command for command in commands(dog))  # wider zoom than the run's 0.5
    assert any("viewpoints, backgrounds" in step.text for step in dog.next_steps)
    assert any(command.startswith("doctor audit /data/set/data.yaml") for command in commands(dog))
    assert diagnosis.status("bird").level == "error"  # practically not detected on val
    assert diagnosis.verdict.level == "warning" and "'dog'" in diagnosis.verdict.title


def test_train_val_gap_points_to_the_audit_when_there_is_one():
    note = "class 'dog': median box side in val is 0.40x train's"
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("dog", 0.9, 0.4, audit_notes=(note,))],
                             facts(num_classes=2, audit_report="/work/doctor_reports/set.html"))
    dog = diagnosis.status("dog")
    assert note in dog.detail
    assert any("audit report's scale-shift" in step.text for step in dog.next_steps)
    assert not any(command.startswith("doctor audit") for command in commands(dog))


def test_low_train_low_val_on_a_run_that_learns_other_classes_blames_the_class():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("dog", 0.88, 0.84),
                              numbers("fox", 0.3, 0.25, confused_with=("dog", 0.6))], facts())
    fox = diagnosis.status("fox")
    assert fox.rule == "both-low" and fox.level == "warning"
    assert "learns other classes but not this one" in fox.detail and "60% of its val boxes" in fox.detail
    assert any("check the labels of 'fox'" in step.text for step in fox.next_steps)
    assert any("'fox' and 'dog'" in step.text for step in fox.next_steps)
    assert any("--model s" in command for command in commands(fox))
    assert overall(diagnosis, "underfit") is None  # the mean train AP50 is high


def test_a_long_enough_run_that_underfits_suggests_a_larger_model():
    diagnosis = diagnose_run([numbers("cat", 0.3, 0.25), numbers("dog", 0.35, 0.3)], facts(num_classes=2))
    underfit = overall(diagnosis, "underfit")
    assert underfit.level == "warning" and any("--model s" in c for c in commands(underfit))


def test_low_train_and_a_failing_val_is_an_error():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("fox", 0.2, 0.05)], facts(num_classes=2))
    assert diagnosis.status("fox").level == "error"


def test_low_everything_on_an_undertrained_run_blames_the_run_not_each_class():
    classes = [numbers(name, 0.05, 0.02) for name in ("cat", "dog", "fox")]
    diagnosis = diagnose_run(classes, facts(epochs_done=3, epochs_planned=3, iterations_per_epoch=8))
    for name in ("cat", "dog", "fox"):
        status = diagnosis.status(name)
        assert status.rule == "both-low" and status.level == "info" and "undertrained" in status.detail
    underfit = overall(diagnosis, "underfit")
    assert underfit.level == "error" and "undertrained" in underfit.detail
    assert any("--epochs 750" in c for c in commands(underfit))  # longer first: a bigger model needs longer still
    assert not any("--model s" in c for c in commands(underfit))
    short = overall(diagnosis, "short-training")
    assert short.level == "warning" and "24 iterations" in short.detail and "6,000" in short.detail
    assert any("--epochs 750" in command for command in commands(short))  # 6000 / 8 per epoch
    assert diagnosis.verdict.level == "error" and "undertrained" in diagnosis.verdict.title
    assert diagnosis.verdict.next_steps  # the verdict says what to do first


def test_a_short_run_that_learnt_something_compares_classes_relative_to_its_best():
    """A CPU run whose best class reaches 0.4: classes near it count as learnt, one far below lags."""
    classes = [numbers("cat", 0.4, 0.36), numbers("dog", 0.34, 0.3), numbers("fox", 0.1, 0.08)]
    diagnosis = diagnose_run(classes, facts(epochs_done=10, iterations_per_epoch=30))
    assert diagnosis.status("cat").rule == "fine" and diagnosis.status("dog").rule == "fine"
    fox = diagnosis.status("fox")
    assert fox.rule == "both-low" and "learns other classes but not this one" in fox.detail
    assert fox.level == "warning" and "run is also short" in fox.detail  # not an error while the run is short
    assert overall(diagnosis, "underfit") is not None  # still low in absolute terms
    assert diagnosis.verdict.level == "warning"


def test_val_far_above_a_low_train_ap_is_said_not_called_low():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", 0.1, 0.8, train_subset_instances=2)],
                             facts(num_classes=2))
    owl = diagnosis.status("owl")
    assert owl.rule == "val-above-train" and owl.level == "info" and "2 train-subset boxes" in owl.detail


def test_the_verdict_puts_run_level_steps_first():
    classes = [numbers("cat", 0.4, 0.36), numbers("fox", 0.1, 0.02, train_instances=20)]
    diagnosis = diagnose_run(classes, facts(num_classes=2, epochs_done=10, iterations_per_epoch=30))
    assert "--epochs 200" in diagnosis.verdict.next_steps[0].command  # 6000 iterations at 30 per epoch


def test_a_class_without_val_boxes_cannot_be_measured():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", 0.7, None, val_instances=0)],
                             facts(num_classes=2))
    owl = diagnosis.status("owl")
    assert owl.rule == "not-measurable" and owl.level == "warning"
    assert any(command == "doctor split /data/set/data.yaml --out /data/set-split" for command in commands(owl))


def test_nothing_measurable_at_all_is_said_in_the_verdict():
    diagnosis = diagnose_run([numbers("cat", 0.5, None, val_instances=0)], facts(num_classes=1))
    assert diagnosis.verdict.level == "error" and "val has no box" in diagnosis.verdict.title


def test_a_class_missing_from_the_train_subset_gets_its_val_judged_alone():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", None, 0.2, train_instances=150)],
                             facts(num_classes=2))
    owl = diagnosis.status("owl")
    assert owl.rule == "not-in-train-subset" and owl.level == "warning"
    assert "doctor val /runs/exp/weights/best.pt /data/set/data.yaml --split train --imgsz 640" in commands(owl)


def test_too_few_instances_suggests_training_longer_and_pasting_not_image_copies():
    """bench_imbalance on aquarium: class weights trained as long as an image-rebalanced copy beat it."""
    classes = [numbers("cat", 0.9, 0.85, train_instances=1200), numbers("dog", 0.9, 0.8, train_instances=400),
               numbers("fox", 0.4, 0.3, train_instances=30)]
    diagnosis = diagnose_run(classes, facts())
    few = find(diagnosis, "fox", "few-instances")
    assert few.level == "warning" and "30 train boxes" in few.detail
    assert commands(few) == [
        "doctor train /data/set/data.yaml --model n --imgsz 640 --epochs 300 --class-weights auto",
        "doctor train /data/set/data.yaml --model n --imgsz 640 --epochs 100 --copy-paste 0.5"]
    assert "3x longer with class weights" in few.next_steps[1].text and "0.092 vs 0.075" in few.next_steps[1].text
    assert "few-instances" not in rules(diagnosis.findings_of("cat"))
    weighted = find(diagnose_run(classes, facts(class_weights_method="inverse")), "fox", "few-instances")
    assert commands(weighted)[0] == "doctor train /data/set/data.yaml --model n --imgsz 640 --epochs 300"


def test_too_few_instances_from_another_trainer_offers_a_rebalance_with_a_sensible_target():
    classes = [numbers("cat", 0.9, 0.85, train_instances=1200), numbers("dog", 0.9, 0.8, train_instances=400),
               numbers("fox", 0.4, 0.3, train_instances=30)]
    few = find(diagnose_run(classes, facts(own_trainer=False)), "fox", "few-instances")
    assert commands(few) == [
        "doctor rebalance /data/set/data.yaml --target 400 --method paste --out /data/set-rebalanced"]
    assert any("3x longer" in step.text for step in few.next_steps)
    assert "0.110 -> 0.138" in few.next_steps[-1].text  # the paste rebalance's measurement


def test_too_few_instances_offers_online_copy_paste_only_when_the_run_did_not_use_it():
    classes = [numbers("cat", 0.9, 0.85, train_instances=1200), numbers("fox", 0.4, 0.3, train_instances=30)]
    pasted = find(diagnose_run(classes, facts(num_classes=2, copy_paste=0.3)), "fox", "few-instances")
    assert not any("--copy-paste" in command for command in commands(pasted))
    # online pastes already on (the default): a written paste copy is the next lever, with its measurement
    assert commands(pasted)[-1] == ("doctor rebalance /data/set/data.yaml --target 1200 --method paste "
                                    "--out /data/set-rebalanced")
    assert "0.406 vs 0.324" in pasted.next_steps[-1].text and "0.110 -> 0.138" in pasted.next_steps[-1].text
    turned_off = find(diagnose_run(classes, facts(num_classes=2)), "fox", "few-instances")
    assert "the default this run turned off" in turned_off.next_steps[-1].text
    assert not any(command.startswith("doctor rebalance") for command in commands(turned_off))
    elsewhere = find(diagnose_run(classes, facts(num_classes=2, own_trainer=False)), "fox", "few-instances")
    assert not any("copy-paste" in step.text for step in elsewhere.next_steps)


def test_few_instances_on_a_class_that_does_fine_is_only_info():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", 0.88, 0.8, train_instances=60)],
                             facts(num_classes=2))
    assert find(diagnosis, "owl", "few-instances").level == "info"


def test_few_instances_on_a_rebalanced_copy_asks_for_real_images_not_more_copies():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", 0.3, 0.2, train_instances=60)],
                             facts(num_classes=2, rebalanced_from="/data/orig/data.yaml", rebalance_target=60))
    few = find(diagnosis, "owl", "few-instances")
    assert "already a rebalanced copy" in few.detail and not commands(few)


def test_a_class_without_train_boxes_is_an_error():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", None, 0.0, train_instances=0)],
                             facts(num_classes=2))
    assert find(diagnosis, "owl", "few-instances").level == "error"


def test_val_ap_on_a_handful_of_boxes_is_flagged_as_noisy():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("owl", 0.9, 0.8, val_instances=6)],
                             facts(num_classes=2))
    assert find(diagnosis, "owl", "noisy-val").level == "info"
    assert "noisy-val" not in rules(diagnosis.findings_of("cat"))


def test_a_heavily_weighted_class_with_many_false_positives_is_over_boosted():
    boosted = numbers("owl", 0.9, 0.7, class_weight=6.0, val_precision=0.2, val_recall=0.8)
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85, class_weight=0.5, val_precision=0.9, val_recall=0.8),
                              numbers("dog", 0.9, 0.85, class_weight=1.0, val_precision=0.3, val_recall=0.8),
                              boosted], facts(class_weights_method="inverse"))
    finding = find(diagnosis, "owl", "over-boosted")
    assert "6.0x the median" in finding.detail
    assert any("--class-weight-method sqrt" in command for command in commands(finding))
    assert "over-boosted" not in rules(diagnosis.findings_of("dog"))  # low precision, but weighted like most
    heavy_everywhere = diagnose_run([numbers("cat", 0.9, 0.85, class_weight=5.0), boosted],
                                    facts(num_classes=2, class_weights_method="inverse"))
    assert "over-boosted" not in rules(heavy_everywhere.findings_of("owl"))  # weighted like the others
    unweighted = diagnose_run([boosted], facts(num_classes=1, class_weights_method="none"))
    assert "over-boosted" not in rules(unweighted.findings_of("owl"))


# --- the run -------------------------------------------------------------------------------------------------------

def test_training_length_follows_darknet_max_batches():
    # 2000 per class for 10 classes = 20,000; the train images (50,000) raise the bar further
    run = facts(num_classes=10, epochs_done=50, iterations_per_epoch=200, train_images=50_000)
    assert run.recommended_iterations == 50_000
    classes = [numbers(f"c{i}", 0.3, 0.2) for i in range(10)]
    short = overall(diagnose_run(classes, run), "short-training")
    assert short.level == "warning" and "10,000 iterations" in short.detail
    assert any("--epochs 250" in command for command in commands(short))
    good = [numbers(f"c{i}", 0.9, 0.85) for i in range(10)]
    assert overall(diagnose_run(good, run), "short-training").level == "info"  # fine already: only a note
    long_enough = facts(num_classes=10, epochs_done=300, iterations_per_epoch=200, train_images=50_000)
    assert overall(diagnose_run(classes, long_enough), "short-training") is None


def test_mean_train_high_val_low_is_a_run_level_train_val_gap():
    classes = [numbers("cat", 0.95, 0.5), numbers("dog", 0.9, 0.45), numbers("fox", 0.9, 0.7)]
    gap = overall(diagnose_run(classes, facts()), "train-val-gap")
    assert gap.level == "warning" and "doctor split" in commands(gap)[0]


def test_curves_that_peak_and_fall_while_train_rises_are_overfitting():
    curve = ((1, 0.2, 0.2), (2, 0.4, 0.35), (3, 0.6, 0.42), (4, 0.8, 0.36), (5, 0.9, 0.33))
    finding = overall(diagnose_run([numbers("cat", 0.9, 0.6)], facts(num_classes=1, curve=curve)), "overfitting")
    assert finding.level == "warning" and "epoch 3" in finding.detail
    assert any("--epochs 3" in command for command in commands(finding))


def test_curves_still_rising_at_the_end_say_train_longer():
    curve = tuple((epoch, 0.1 * epoch, 0.08 * epoch) for epoch in range(1, 9))
    run = facts(num_classes=1, curve=curve, epochs_done=8, epochs_planned=8, iterations_per_epoch=1000)
    finding = overall(diagnose_run([numbers("cat", 0.8, 0.64)], run), "still-improving")
    assert finding.level == "info" and any("--epochs 18" in command for command in commands(finding))
    short = facts(num_classes=1, curve=curve, epochs_done=8, epochs_planned=8, iterations_per_epoch=10)
    finding = overall(diagnose_run([numbers("cat", 0.8, 0.64)], short), "still-improving")
    assert not finding.next_steps and "too short" in finding.detail  # short-training says how long
    flat = tuple((epoch, 0.5, 0.4) for epoch in range(1, 9))
    assert overall(diagnose_run([numbers("cat", 0.8, 0.64)], facts(num_classes=1, curve=flat)),
                   "still-improving") is None


def test_rebalancing_mechanisms_that_compound_are_flagged():
    both = facts(class_weights_method="inverse", rebalanced_from="/data/orig/data.yaml", rebalance_target=500)
    finding = overall(diagnose_run([numbers("cat", 0.9, 0.85)], both), "compounding")
    assert finding.level == "warning" and "rebalanced train set (target 500)" in finding.detail
    assert any("--class-weights none" in command for command in commands(finding))
    three = facts(class_weights_method="sqrt", sampler="balanced", rebalanced_from="/d/data.yaml")
    assert overall(diagnose_run([numbers("cat", 0.9, 0.85)], three), "compounding").title.startswith("3 ")
    alone = facts(class_weights_method="inverse")
    assert overall(diagnose_run([numbers("cat", 0.9, 0.85)], alone), "compounding") is None


def test_suggested_commands_keep_the_run_options_and_quote_paths():
    run = facts(num_classes=2, dataset="/data/my set/data.yaml", epochs_done=3, iterations_per_epoch=8)
    diagnosis = diagnose_run([numbers("cat", 0.05, 0.02), numbers("dog", 0.04, 0.01)], run)
    command = commands(overall(diagnosis, "short-training"))[0]
    assert shlex.split(command) == ["doctor", "train", "/data/my set/data.yaml", "--model", "n", "--imgsz", "640",
                                    "--epochs", "750"]


def test_classes_sharing_a_name_keep_their_own_findings():
    diagnosis = diagnose_run([numbers("cat", 0.9, 0.85), numbers("cat", 0.7, None, val_instances=0)],
                             facts(num_classes=2))
    assert diagnosis.status(0).rule == "fine" and diagnosis.status(1).rule == "not-measurable"


def test_no_per_class_results_means_an_unfinished_run():
    diagnosis = diagnose_run([], facts())
    assert diagnosis.verdict.level == "error" and "doctor train --resume /runs/exp" in commands(diagnosis.verdict)


# --- another trainer's predictions (doctor diagnose) ---------------------------------------------------------------

def test_another_trainers_predictions_get_no_length_rule_and_no_doctor_train_commands():
    """Unknown training length (iterations_per_epoch 0) is not "too short", and steps keep their text but drop
    commands of our trainer: an Ultralytics user cannot run them."""
    classes = [numbers("good", 0.9, 0.88), numbers("gap", 0.9, 0.3), numbers("low", 0.2, 0.15)]
    external = facts(epochs_done=0, epochs_planned=0, iterations_per_epoch=0, train_options=(), own_trainer=False)
    diagnosis = diagnose_run(classes, external)
    assert overall(diagnosis, "short-training") is None
    low = find(diagnosis, "low", "both-low")
    assert "short for its class count" not in low.detail
    assert any("larger model" in step.text for step in low.next_steps)  # said, since the length is not known short
    every = [*diagnosis.overall, diagnosis.verdict, *(f for found in diagnosis.per_class for f in found)]
    assert not any(command.startswith(("doctor train", "doctor val")) for f in every for command in commands(f))
    assert any(commands(f) for f in every)  # doctor audit / split / rebalance still apply to any trainer
    assert [diagnosis_id(diagnosis.status(i)) for i in range(3)] == ["fine", "overfitting", "labels-or-capacity"]


def test_short_ids_of_the_main_findings():
    diagnosis = diagnose_run([numbers("none", 0.8, None, val_instances=0), numbers("ok", 0.9, 0.9)], facts())
    assert diagnosis_id(diagnosis.status("none")) == "unmeasurable"
    assert diagnosis_id(diagnosis.status("ok")) == "fine"


def test_the_larger_model_advice_comes_with_its_parameters_and_flops():
    from trainer.model.detector import Detector, ModelConfig, count_gflops, count_parameters

    diagnosis = diagnose_run([numbers("cat", 0.3, 0.25), numbers("dog", 0.35, 0.3)],
                             facts(num_classes=2, train_options=(("model", "n"), ("imgsz", "320"))))
    step = next(step for step in overall(diagnosis, "underfit").next_steps if "larger model" in step.text)
    small, large = Detector(ModelConfig(scale="n", num_classes=2)), Detector(ModelConfig(scale="s", num_classes=2))
    expected = (f"scale s: {count_parameters(large) / 1e6:.1f}M parameters and {count_gflops(large, 320):.1f} GFLOPs "
                f"at 320, {count_gflops(large, 320) / count_gflops(small, 320):.1f}x the compute of scale n "
                f"({count_parameters(small) / 1e6:.1f}M, {count_gflops(small, 320):.1f} GFLOPs)")
    assert expected in step.text and "--model s" in step.command
    p2 = diagnose_run([numbers("cat", 0.3, 0.25), numbers("dog", 0.35, 0.3)],
                      facts(num_classes=2, model_scale="s-p2"))
    step = next(step for step in overall(p2, "underfit").next_steps if "larger model" in step.text)
    assert "scale m-p2:" in step.text and "--model m-p2" in step.command

"""The one ranking of audit problems (terminal verdict and HTML report), its plain words, and the next steps."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dataset_doctor.audit.backgrounds import background_shares
from dataset_doctor.audit.priorities import (
    IMPORTANCE,
    next_steps,
    ranked_problems,
    suggested_rebalance_target,
    top_problems,
)
from dataset_doctor.cli import app
from dataset_doctor.findings import CHECKS, ERROR, SEVERITY_RANK
from tests.dataset_doctor.audit_helpers import NAMES, audit, base_splits, grid_label


def test_every_check_has_a_rank_and_errors_rank_before_warnings():
    assert sorted(IMPORTANCE) == sorted(CHECKS)
    severities = [SEVERITY_RANK[CHECKS[check]] for check in IMPORTANCE]
    assert severities == sorted(severities)


@pytest.mark.parametrize(("counts", "minimum", "expected"), [
    ([1728, 611, 372, 252, 163, 110, 82, 89, 58, 52], 100, 140),  # the sample: median 136.5, rounded up
    ([900, 800, 40, 30], 100, 330),  # median 420, but the rarest reaches at most 30 * 11 = 330 under 10 copies
    ([10_000, 5_000, 5], 100, 100),  # the rarest reaches only 55: no more than min_instances
    ([120, 110, 100], 100, 110),  # the median class
    ([120, 100, 100], 100, None),  # nothing below the median
    ([0, 0], 100, None),
    ([0, 50], 100, 100),  # one class present and short of the minimum
])
def test_rebalance_target(counts, minimum, expected):
    assert suggested_rebalance_target(counts, minimum) == expected


def test_errors_first_and_fixable_errors_share_one_entry(make_dataset):
    splits = base_splits()
    splits["train"]["t001.jpg"] = grid_label() + "0 0.5 0.5 0.1\n"  # malformed-line
    splits["train"]["t002.jpg"] = grid_label() + "0 0.5 0.5 0 0.1\n"  # degenerate-box
    splits["train"]["unlabelled.jpg"] = None  # missing-label
    result = audit(make_dataset(splits, names=NAMES))
    ranked = ranked_problems(result)
    assert [p.check for p in ranked] == ["malformed-line", "degenerate-box", "missing-label"]
    top = top_problems(result)
    assert top[0].checks == ("malformed-line", "degenerate-box") and top[0].severity == ERROR
    assert "2 errors" in top[0].summary and "doctor fix" in top[0].summary
    assert top[1].check == "missing-label" and "1 image without a label file" in top[1].summary
    steps = next_steps(result)
    assert steps[0].command.startswith(f"doctor fix {result.dataset} --out ")
    assert any("Label the images without a label file" in step.text for step in steps)


def test_class_problems_name_the_classes_rarest_first(make_dataset):
    splits = base_splits()
    for number in range(20):  # 'dog' boxes become 'cat' in all images but one: cat 195, dog 5
        splits["train"][f"t{number:03d}.jpg"] = grid_label([0] * 10 if number else [0, 1] * 5)
    result = audit(make_dataset(splits, names=NAMES))
    summaries = {p.check: p.summary for p in ranked_problems(result)}
    assert "'cat' has 39x the train instances of 'dog' (195 vs 5)" in summaries["class-imbalance"]
    assert "'dog' (5)" in summaries["few-instances"]
    steps = next_steps(result)
    paste = next(step for step in steps if step.command and step.command.startswith("doctor rebalance"))
    assert " --target 100 --method paste " in paste.command  # median 100; 'dog' reaches only 55 under the cap
    assert "0.110 -> 0.138" in paste.text and "--copy-paste 0.5" in paste.text  # the measurements behind them
    longer = next(step for step in steps if step.text.startswith("Train about 3x longer with class weights"))
    assert "0.092 vs 0.075" in longer.text
    assert any(step.text.startswith("Collect and label more images of 'dog' (5)") for step in steps)


def test_clean_dataset_has_nothing_to_rank_and_one_step(make_dataset):
    result = audit(make_dataset(base_splits(), names=NAMES))
    assert ranked_problems(result) == [] and top_problems(result) == []
    steps = next_steps(result)
    assert [step.command for step in steps][0] == f"doctor train {result.dataset}"
    assert len(steps) == 2 and steps[1].text.startswith("Add background images to train: only 0 of 20")


def test_background_share_per_split_and_the_step_when_train_has_too_few(make_dataset):
    splits = base_splits()
    splits["train"]["empty.jpg"] = ""  # an empty label file: a background
    splits["train"]["nolabel.jpg"] = None  # no label file: a background too (and missing-label)
    for number in range(3):
        splits["val"][f"neg{number}.jpg"] = ""
    result = audit(make_dataset(splits, names=NAMES))
    shares = background_shares(result.split_summary)
    assert shares["train"] == pytest.approx(2 / 22) and shares["val"] == pytest.approx(3 / 9)
    step = next(step for step in next_steps(result) if step.text.startswith("Add background images"))
    # 2 of 22 = 9.1%: 1 more reaches 10% (3 / 23), 18 more reach parity with the 20 images with objects
    assert "only 2 of 22 train images (9.1%)" in step.text
    assert "add at least 1 to reach 10%" in step.text and "up to 18 for as many negatives" in step.text
    for number in range(3):  # 5 of 25: 20%, enough
        splits["train"][f"neg{number}.jpg"] = ""
    result = audit(make_dataset(splits, names=NAMES, root_name="more"))
    assert not any(step.text.startswith("Add background images") for step in next_steps(result))
    output = CliRunner().invoke(app, ["audit", str(result.dataset), "--no-html"]).output
    assert "5 backgrounds (20.0%)" in output


def test_terminal_verdict_lists_the_top_problems(make_dataset):
    splits = base_splits()
    splits["train"]["t001.jpg"] = grid_label() + "0 0.5 0.5 0.1\n"
    splits["train"]["unlabelled.jpg"] = None
    output = CliRunner().invoke(app, ["audit", str(make_dataset(splits, names=NAMES)), "--no-html"]).output
    assert "most important:" in output
    assert "1. malformed-line: 1 label line cannot be read" in " ".join(output.split())
    assert "2. missing-label: 1 image without a label file" in " ".join(output.split())

"""A hundred classes end to end: `doctor sample --classes 100`, the audit (terminal, HTML), a one-epoch train and
its report; both reports open in Chromium with every class present, the charts sorted and wide enough, the
confusion matrix's most confused pairs listed. Tiny: 50 + 20 images, imgsz 64, one epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dataset_doctor.audit import AuditOptions, run_audit
from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from reports.audit_report import write_audit_report
from reports.training_report import build_training_report
from tests.reports.browser import open_in_chromium, requires_chromium
from tests.reports.test_training_report import figure_segments
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.loop import train


@pytest.fixture(scope="module")
def hundred(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hundred") / "digits"
    result = CliRunner().invoke(app, ["sample", str(out), "--classes", "100", "--train-images", "50",
                                      "--val-images", "20", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out / "data.yaml"


def _names(data_yaml: Path) -> list[str]:
    return yaml.safe_load(data_yaml.read_text())["names"]


def test_the_sample_has_a_hundred_long_tailed_classes(hundred):
    names = _names(hundred)
    assert len(names) == 100 and names[0] == "zero-zero" and names[42] == "four-two" and len(set(names)) == 100
    index = build_index(hundred, progress=False)
    train = index.instances("train")
    assert train[:10].sum() > train[10:].sum() and train[0] >= 10 * max(train[50:].max(), 1)  # the long tail
    output = CliRunner().invoke(app, ["audit", str(hundred), "--no-html"], terminal_width=200).output
    # readable: the top and bottom ten classes of each split, the other eighty in one row
    assert output.count("... 80 more classes") == 2 and "zero-zero" in output
    assert sum(1 for name in names if re.search(rf"│\s*{name}\s*│", output)) < 45


@requires_chromium
def test_both_reports_render_every_class(hundred, tmp_path):
    names = _names(hundred)
    index = build_index(hundred, progress=False)
    audit_page = write_audit_report(run_audit(index, AuditOptions(imgsz=64)), index, tmp_path / "audit.html")
    config = TrainConfig(data=str(hundred), epochs=1, batch=8, project=str(tmp_path / "runs"), name="exp",
                         save_batches=0, seed=0, threads=1, class_weights="none")
    threads = torch.get_num_threads()
    try:
        run_dir = train(TrainSettings(config, DataConfig(imgsz=64, workers=0), AugmentConfig(mosaic=0.0)),
                        progress=False)
    finally:
        torch.set_num_threads(threads)
    training_page = build_training_report(run_dir, search_dirs=[tmp_path / "nowhere"])
    for page in (audit_page, training_page):
        rendered = open_in_chromium(page, tmp_path / f"profile-{page.stem}")
        assert rendered.console == [], page
        assert all('class="main-svg"' in segment for segment in figure_segments(rendered.dom))  # every chart drew
        cells = set(re.findall(r"<td>([a-z-]+)</td>", rendered.dom))
        missing = [name for name in names if name not in cells]
        assert not missing, f"{page.name} lacks {missing[:5]}"
        assert 'class="table-filter"' in rendered.dom  # a class filter
    training_dom = training_page.read_text()
    assert "Most confused pairs" in training_dom and "sorted by val AP50" in training_dom
    assert "sorted by train instances" in audit_page.read_text()

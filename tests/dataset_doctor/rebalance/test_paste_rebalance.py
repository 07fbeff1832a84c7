"""`doctor rebalance --method paste|auto` end to end on a tiny every-image-has-the-frequent-class dataset:
the plan, the written pastes (manifest lines point at real labels), val and the source untouched, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.rebalance.paste_plan import MAX_PASTES_PER_HOST, assign_pastes, compare_methods, paste_effects
from dataset_doctor.rebalance.plan import make_rebalance_plan
from dataset_doctor.rebalance.sources import collect_train_sources
from tests.hostile import tree_digest

FREQUENT_PER_IMAGE = 6


def _blood_like(root: Path, train: int = 24, val: int = 4) -> Path:
    """Every image holds FREQUENT_PER_IMAGE class-0 boxes; class 1 is in every 4th image, class 2 in every 8th."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (128, 96),
                               interpolation=cv2.INTER_CUBIC)
            lines = []
            for j in range(FREQUENT_PER_IMAGE):
                cx, cy = 0.1 + 0.15 * j, 0.2 + 0.1 * (j % 2)
                lines.append(f"0 {cx:.4f} {cy:.4f} 0.1000 0.1200")
            if i % 4 == 0:
                lines.append(f"1 0.30 0.70 {0.12 + 0.01 * (i % 3):.4f} 0.2000")
            if i % 8 == 0:
                lines.append("2 0.75 0.70 0.1500 0.1500")
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / split / f"{split}_{i:03d}.png"), image)
            (root / "labels" / split / f"{split}_{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [red, white, platelet]\n")
    return root / "data.yaml"


@pytest.fixture(scope="module")
def blood(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _blood_like(tmp_path_factory.mktemp("blood"))


def _rebalance(data: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["rebalance", str(data), "--target", "40", "--out", str(out), "--workers", "1",
                                      *extra])
    assert result.exit_code == 0, result.output


def test_paste_plan_adds_rare_boxes_without_the_frequent_class(blood: Path) -> None:
    sources = collect_train_sources(build_index(blood, progress=False))
    counts = sources.count_matrix()
    plan = make_rebalance_plan(counts, 40)
    effects = paste_effects(sources.boxes, 3)
    np.testing.assert_allclose(np.diag(effects), 1.0)
    comparison = compare_methods(counts, effects, plan, "auto")
    images, paste, auto = (comparison.outcomes[m] for m in ("images", "paste", "auto"))
    before = counts.sum(axis=0)
    assert images.instances[0] >= 2 * before[0]  # copies drag the red cells along
    assert paste.added_images == 0 and paste.instances[0] == pytest.approx(before[0])
    assert (paste.instances[1:] >= plan.goals[1:] - 1e-9).all()  # platelet: 3 instances, capped at 33
    assert comparison.surplus(auto.instances) <= comparison.surplus(paste.instances) + 1e-9
    assert comparison.ratio(auto.instances) < comparison.ratio(images.instances)


def test_hosts_are_spread_and_never_the_source(blood: Path) -> None:
    sources = collect_train_sources(build_index(blood, progress=False))
    pastes = np.array([0, 34, 37])
    jobs = assign_pastes(sources.boxes, len(sources.images), pastes, seed=3)
    assert len(jobs) == pastes.sum()
    assert all(job.host != job.source for job in jobs)
    per_host = np.bincount([job.host for job in jobs], minlength=len(sources.images))
    assert per_host.max() <= MAX_PASTES_PER_HOST
    per_instance = np.bincount([job.box for job in jobs])
    rare_instances = np.bincount(sources.boxes["cls"], minlength=3)
    for cls in (1, 2):  # round-robin: no instance used more than ceil(pastes / instances) times
        used = per_instance[np.flatnonzero(sources.boxes["cls"].to_numpy() == cls)]
        assert used.max() <= -(-pastes[cls] // rare_instances[cls])
    assert [(j.host, j.box, j.seed) for j in jobs] == [
        (j.host, j.box, j.seed) for j in assign_pastes(sources.boxes, len(sources.images), pastes, seed=3)]


def test_written_pastes_match_the_manifest_and_leave_source_and_val_alone(blood: Path, tmp_path: Path) -> None:
    before = tree_digest(blood.parent)
    out = tmp_path / "pasted"
    _rebalance(blood, out, "--method", "paste")
    assert tree_digest(blood.parent) == before
    index = build_index(out / "data.yaml", progress=False)
    assert index.problems[index.problems["severity"] == "error"].empty
    val = index.images_in("val")
    assert all(Path(p).is_relative_to(blood.parent) for p in val["path"])  # val is the source's, unchanged
    instances = index.instances("train")
    assert instances[0] <= FREQUENT_PER_IMAGE * 24 and instances[1] >= 38 and instances[2] >= 31

    rows = list(csv.DictReader((out / "manifest.csv").open()))
    pastes = [row for row in rows if row["source_line"]]
    assert len(pastes) >= 60 and not any("_rb" in row["file"] for row in rows)  # no image copies
    source_root = blood.parent
    for row in pastes:
        host = out / row["file"]
        assert not host.is_symlink() and Path(row["source"]) != host.resolve()
        assert Path(row["source"]).is_relative_to(source_root)
        source_label = Path(row["source"].replace("/images/", "/labels/")).with_suffix(".txt")
        source_class = source_label.read_text().splitlines()[int(row["source_line"]) - 1].split()[0]
        host_label = Path(str(host).replace("/images/", "/labels/")).with_suffix(".txt")
        cls, cx, cy, w, h = host_label.read_text().splitlines()[int(row["line"]) - 1].split()
        assert cls == source_class
        assert float(cx) - float(w) / 2 >= 0 and float(cx) + float(w) / 2 <= 1 + 1e-6
    # the frequent class does not grow: hosts are images already in train
    assert instances[0] <= FREQUENT_PER_IMAGE * 24


def test_same_seed_writes_the_same_dataset(blood: Path, tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _rebalance(blood, first, "--seed", "5")
    _rebalance(blood, second, "--seed", "5")
    _rebalance(blood, other, "--seed", "6")

    def contents(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "labels").rglob("*.txt"))} | {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "images").rglob("*"))
            if p.is_file() and not p.is_symlink()}

    assert contents(first) == contents(second)
    assert contents(first) != contents(other)


def test_dry_run_shows_the_methods_side_by_side_and_images_pastes_nothing(blood: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["rebalance", str(blood), "--target", "40", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "images vs paste vs auto" in result.output
    pasted_row = next(line for line in result.output.splitlines() if "pasted instances" in line)
    images_cell, paste_cell = pasted_row.replace("│", " ").split()[2:4]
    assert images_cell == "0" and int(paste_cell) > 0
    out = tmp_path / "images"
    _rebalance(blood, out, "--method", "images")
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert not any(row["source_line"] for row in rows) and any("_rb" in row["file"] for row in rows)


def test_audit_of_the_output_shows_before_and_after_per_method(blood: Path, tmp_path: Path) -> None:
    """`doctor audit` on a rebalance output reads its rebalance.json: per class before, images / paste / auto
    (the written one in bold), written and now, in the terminal, the HTML report and --json."""
    out = tmp_path / "out"
    _rebalance(blood, out, "--method", "paste")
    report, html = tmp_path / "audit.json", tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["audit", str(out / "data.yaml"), "--html", str(html), "--json", str(report)])
    assert result.exit_code in (0, 1), result.output
    assert "made by doctor rebalance --method paste" in result.output
    assert "Rebalanced: doctor rebalance --method paste" in html.read_text()
    data = json.loads(report.read_text())
    assert data["rebalance"]["method"] == "paste"
    rows = {row["class"]: row for row in data["rebalance"]["per_class"]}
    record = json.loads((out / "rebalance.json").read_text())
    assert [rows[name]["before"] for name in ("red", "white", "platelet")] == record["before"]
    assert rows["white"]["paste"] == record["object_methods"]["methods"]["paste"]["instances"][1]
    assert rows["white"]["images"] == record["object_methods"]["methods"]["images"]["instances"][1]
    assert [rows[name]["now"] for name in ("red", "white", "platelet")] == data["splits"]["train"]["instances"]
    assert [rows[name]["written"] for name in ("red", "white", "platelet")] == \
        record["object_methods"]["written"]["instances"]


def _check_pastes_in_place(out: Path, rows: list[dict]) -> None:
    """Every manifest paste row's line in its host's label file holds the source instance's class."""
    for row in rows:
        source_label = Path(row["source"].replace("/images/", "/labels/")).with_suffix(".txt")
        source_class = source_label.read_text().splitlines()[int(row["source_line"]) - 1].split()[0]
        host_label = Path(str(out / row["file"]).replace("/images/", "/labels/")).with_suffix(".txt")
        assert host_label.read_text().splitlines()[int(row["line"]) - 1].split()[0] == source_class


def test_classes_written_short_of_the_plan_are_topped_up_into_unpasted_images(blood: Path, tmp_path: Path) -> None:
    """Pastes can hide host boxes and crops cut them off: the write adds pastes until the promised counts hold."""
    from dataset_doctor.rebalance.materialize import write_rebalanced_dataset

    sources = collect_train_sources(build_index(blood, progress=False))
    before = sources.count_matrix().sum(axis=0)
    planned = np.array([0, 6, 4])
    jobs = assign_pastes(sources.boxes, len(sources.images), planned, seed=1)
    plain = write_rebalanced_dataset(sources, np.zeros(len(sources.images), np.int64), tmp_path / "plain",
                                     pastes=jobs, workers=1, progress=False)
    goals = np.array([0, plain.instances[1] + 5, plain.instances[2] + 3])  # as if 5 and 3 had been lost
    out = tmp_path / "topped"
    topped = write_rebalanced_dataset(sources, np.zeros(len(sources.images), np.int64), out, pastes=jobs,
                                      paste_goals=goals, workers=1, progress=False)
    assert topped.instances[1] >= goals[1] and topped.instances[2] >= goals[2]
    assert topped.instances[0] <= before[0]  # no copies: the frequent class cannot grow
    assert topped.pasted >= plain.pasted + 8
    rows = [row for row in csv.DictReader((out / "manifest.csv").open()) if row["source_line"]]
    # a host given more pastes is rewritten with all of them: the first round's rows stay true
    _check_pastes_in_place(out, [row for row in rows if row["line"]])
    first_round = [row for row in csv.DictReader((tmp_path / "plain/manifest.csv").open()) if row["source_line"]]
    key = ("file", "source", "source_line", "seed")
    assert {tuple(row[k] for k in key) for row in first_round} < {tuple(row[k] for k in key) for row in rows}
    again = write_rebalanced_dataset(sources, np.zeros(len(sources.images), np.int64), tmp_path / "again",
                                     pastes=jobs, paste_goals=goals, workers=1, progress=False)
    assert again.instances.tolist() == topped.instances.tolist()  # deterministic


def test_paste_goals_promise_the_plan_to_classes_below_the_target_only(blood: Path) -> None:
    from dataset_doctor.rebalance.paste_plan import paste_goals

    sources = collect_train_sources(build_index(blood, progress=False))
    counts = sources.count_matrix()
    comparison = compare_methods(counts, paste_effects(sources.boxes, 3), make_rebalance_plan(counts, 40), "paste")
    goals = paste_goals(comparison.outcomes["paste"], counts.sum(axis=0), 40)
    assert goals[0] == 0  # red is above the target: never topped up
    assert 0 < goals[2] <= 40 and goals[1] == 40

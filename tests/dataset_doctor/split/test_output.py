"""`doctor split` inputs and outputs: plain folders (both layouts, class names from classes.txt, a names-only
data.yaml or inferred), name clashes, link modes, the refusals that protect data, and the CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dataset_doctor.atomic import OUTPUT_MARKER
from dataset_doctor.cli import app
from dataset_doctor.errors import DoctorError
from dataset_doctor.split import split_dataset
from dataset_doctor.split import write as split_write

BOX = "{} 0.5 0.5 0.2 0.2\n"


def labels_for(count: int, classes: int = 3) -> dict[str, str]:
    """count images named img_XX.jpg, cycling through the classes, one box each (class 2 gets two)."""
    return {f"img_{i:02d}.jpg": BOX.format(i % classes) * (2 if i % classes == 2 else 1) for i in range(count)}


@pytest.fixture
def yaml_dataset(make_dataset) -> Path:
    return make_dataset({"train": labels_for(16), "val": labels_for(6)}, names=["cat", "dog", "fox"])


@pytest.fixture
def images_labels_folder(yaml_dataset: Path) -> Path:
    """The images/ + labels/ layout without a data.yaml; names in labels/classes.txt (LabelImg writes it there)."""
    root = yaml_dataset.parent
    yaml_dataset.unlink()
    (root / "labels" / "classes.txt").write_text("cat\ndog\nfox\n")
    return root


@pytest.fixture
def flat_folder(yaml_dataset: Path) -> Path:
    """Labels beside the images in one folder, no class names anywhere."""
    root = yaml_dataset.parent
    flat = root.parent / "flat"
    flat.mkdir()
    for split in ("train", "val"):
        for image in sorted((root / "images" / split).iterdir()):
            stem = f"{split}_{image.stem}"
            shutil.copy(image, flat / f"{stem}{image.suffix}")
            shutil.copy(root / "labels" / split / f"{image.stem}.txt", flat / f"{stem}.txt")
    return flat


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_images_and_labels_folder(images_labels_folder: Path, tmp_path: Path) -> None:
    result = split_dataset(images_labels_folder, tmp_path / "out", seed=0)
    assert result.notes == []
    data = yaml.safe_load(result.data_yaml.read_text())
    assert data["names"] == ["cat", "dog", "fox"] and data["nc"] == 3
    splits = result.summary["splits"]
    assert splits["train"]["images"] + splits["val"]["images"] == 22
    total = [a + b for a, b in zip(splits["train"]["instances"], splits["val"]["instances"])]
    assert total == [8, 7, 14]  # 22 images cycling classes 0, 1, 2; class 2 with two boxes each
    assert all(count > 0 for count in splits["val"]["instances"])
    assert len(list((result.out / "labels").rglob("*.txt"))) == 22


def test_labels_beside_images_with_inferred_names(flat_folder: Path, tmp_path: Path) -> None:
    result = split_dataset(flat_folder, tmp_path / "out", seed=0)
    assert len(result.notes) == 1 and "no classes.txt" in result.notes[0] and "'0'..'2'" in result.notes[0]
    assert yaml.safe_load(result.data_yaml.read_text())["names"] == ["0", "1", "2"]
    splits = result.summary["splits"]
    assert [a + b for a, b in zip(splits["train"]["instances"], splits["val"]["instances"])] == [8, 7, 14]


def test_labels_beside_images_in_a_folder_named_images_is_refused(flat_folder: Path, tmp_path: Path) -> None:
    named_images = flat_folder.parent / "export" / "images"
    named_images.parent.mkdir()
    flat_folder.rename(named_images)
    with pytest.raises(DoctorError, match="folder not named 'images'"):
        split_dataset(named_images, tmp_path / "out")


def test_folder_names_from_a_names_only_data_yaml(images_labels_folder: Path, tmp_path: Path) -> None:
    (images_labels_folder / "labels" / "classes.txt").unlink()
    (images_labels_folder / "data.yaml").write_text("names: {0: red, 1: green, 2: blue}\n")
    result = split_dataset(images_labels_folder, tmp_path / "out")
    assert result.summary["classes"] == ["red", "green", "blue"]


def test_bad_classes_txt_is_a_one_line_error(images_labels_folder: Path, tmp_path: Path) -> None:
    (images_labels_folder / "labels" / "classes.txt").write_text("cat\n\nfox\n")
    with pytest.raises(DoctorError, match=r"classes.txt:2: blank line"):
        split_dataset(images_labels_folder, tmp_path / "out")


def test_a_folder_holding_a_data_yaml_with_splits_is_that_dataset(yaml_dataset: Path, tmp_path: Path) -> None:
    result = split_dataset(yaml_dataset.parent, tmp_path / "out")
    assert result.summary["source"] == str(yaml_dataset.resolve())
    assert {entry["source_split"] for entry in result.summary["images"]} == {"train", "val"}


def test_clashing_file_names_get_unique_deterministic_names(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({
        "train": {"a.jpg": BOX.format(0), "b.jpg": BOX.format(1), **labels_for(8)},
        "val": {"a.jpg": BOX.format(1), "A.png": BOX.format(2), **labels_for(8)},
    })
    outputs = []
    for name in ("first", "second"):
        result = split_dataset(data_yaml, tmp_path / name, seed=5)
        outputs.append({entry["image"]: entry["output"] for entry in result.summary["images"]})
        stems = [Path(output).stem.lower() for output in outputs[-1].values()]
        assert len(stems) == len(set(stems)) == 20
        for image, output in outputs[-1].items():  # every image kept its own label
            label = (data_yaml.parent / image.replace("images/", "labels/", 1)).with_suffix(".txt")
            written = (result.out / output.replace("images/", "labels/", 1)).with_suffix(".txt")
            assert written.read_bytes() == label.read_bytes()
    assert outputs[0] == outputs[1]
    renamed = {Path(entry["image"]).as_posix() for entry in result.summary["renamed"]}
    # val's a.jpg, A.png and img_00..07 share a stem with a train image, which sorts first and keeps its name
    assert len(renamed) == 10
    assert Path(outputs[0]["images/train/a.jpg"]).name == "a.jpg"


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_link_modes(yaml_dataset: Path, tmp_path: Path, link: str) -> None:
    result = split_dataset(yaml_dataset, tmp_path / "out", link=link)
    assert result.summary["link"] == link and result.summary["link_fallbacks"] == 0
    for entry in result.summary["images"]:
        source, output = yaml_dataset.parent / entry["image"], result.out / entry["output"]
        assert output.read_bytes() == source.read_bytes()
        assert output.is_symlink() == (link == "symlink")
        if link == "symlink":
            assert Path(os.readlink(output)) == source.resolve()
        same_file = os.stat(output).st_ino == os.stat(source).st_ino
        assert same_file == (link != "copy")
        label = (result.out / entry["output"].replace("images/", "labels/", 1)).with_suffix(".txt")
        assert not label.is_symlink() and label.stat().st_nlink == 1  # labels are always independent copies


def test_hardlink_falls_back_to_copy_across_filesystems(yaml_dataset: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    result = split_dataset(yaml_dataset, tmp_path / "out", link="hardlink")
    assert result.summary["link_fallbacks"] == 22
    entry = result.summary["images"][0]
    assert os.stat(result.out / entry["output"]).st_ino != os.stat(yaml_dataset.parent / entry["image"]).st_ino


def test_refuses_a_non_empty_output_and_forces_only_over_an_earlier_output(yaml_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DoctorError, match="not empty"):
        split_dataset(yaml_dataset, out)
    with pytest.raises(DoctorError, match="only a folder dataset-doctor wrote"):  # not ours: --force refused
        split_dataset(yaml_dataset, out, force=True)
    assert files_under(out) == ["keep.txt"]
    earlier = tmp_path / "earlier"
    split_dataset(yaml_dataset, earlier, seed=1)
    (earlier / "stale.txt").write_text("from the earlier run")
    split_dataset(yaml_dataset, earlier, force=True)
    assert not (earlier / "stale.txt").exists() and (earlier / "data.yaml").exists()
    assert (earlier / OUTPUT_MARKER).is_file()  # replaceable again
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing left aside


def test_an_empty_output_directory_is_used(yaml_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert (split_dataset(yaml_dataset, tmp_path / "out").out / "data.yaml").exists()


def test_refuses_output_inside_the_source(yaml_dataset: Path) -> None:
    before = files_under(yaml_dataset.parent)
    for inside in (yaml_dataset.parent / "splits", yaml_dataset.parent / "images" / "new"):
        with pytest.raises(DoctorError, match="inside the source"):
            split_dataset(yaml_dataset, inside)
    assert files_under(yaml_dataset.parent) == before


def test_refuses_to_replace_a_folder_holding_the_source(yaml_dataset: Path) -> None:
    holder = yaml_dataset.parent.parent
    before = files_under(yaml_dataset.parent)
    with pytest.raises(DoctorError, match="contains the source"):
        split_dataset(yaml_dataset, holder, force=True)
    assert files_under(yaml_dataset.parent) == before


def test_refuses_an_output_that_is_a_file(yaml_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(DoctorError, match="not a directory"):
        split_dataset(yaml_dataset, tmp_path / "out", force=True)


@pytest.mark.parametrize(("options", "message"), [
    ({"ratios": "0.8,0.3"}, "must sum to 1"),
    ({"link": "reflink"}, "--link must be one of"),
])
def test_bad_options(yaml_dataset: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(DoctorError, match=message):
        split_dataset(yaml_dataset, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_leaves_nothing(yaml_dataset: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_place(source, target, mode):
        calls.append(source)
        if len(calls) == 5:
            raise DoctorError("disk full", source)
        return original(source, target, mode)

    original = split_write.place_image
    monkeypatch.setattr(split_write, "place_image", failing_place)
    with pytest.raises(DoctorError, match="disk full"):
        split_dataset(yaml_dataset, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name == "out"] == []


def test_too_few_distinct_images_for_the_splits(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": BOX.format(0)}, "val": {"b.jpg": BOX.format(1)}})
    root = data_yaml.parent
    shutil.copy(root / "images" / "train" / "a.jpg", root / "images" / "val" / "b.jpg")  # one duplicate group
    with pytest.raises(DoctorError, match="split val would get no image: 2 image"):
        split_dataset(data_yaml, tmp_path / "out")


def test_listed_images_that_do_not_exist_are_reported_and_skipped(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": labels_for(10), "val": labels_for(4)})
    (data_yaml.parent / "val.txt").write_text("images/val/img_00.jpg\nimages/val/gone.jpg\n")
    config = yaml.safe_load(data_yaml.read_text())
    data_yaml.write_text(yaml.safe_dump({**config, "val": "val.txt"}))
    result = split_dataset(data_yaml, tmp_path / "out")
    assert result.summary["not_found"] == ["images/val/gone.jpg"]
    assert len(result.summary["images"]) == 11  # 10 train + the one listed val image that exists
    assert sum(split["images"] for split in result.summary["splits"].values()) == 11
    assert len(files_under(result.out / "images")) == 11


def test_cli_prints_the_table_and_writes_split_json(yaml_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["split", str(yaml_dataset), "--out", str(out), "--ratios", "0.7,0.3",
                                      "--seed", "2", "--link", "hardlink"])
    assert result.exit_code == 0, result.output
    for text in ("instances per split", "cat", "dog", "fox", "train 70%", "val 30%", "wrote"):
        assert text in result.output
    summary = json.loads((out / "split.json").read_text())
    assert summary["seed"] == 2 and summary["ratios"] == {"train": 0.7, "val": 0.3}


def test_a_class_too_rare_for_every_split_is_named(make_dataset, tmp_path: Path) -> None:
    train = {**labels_for(12, classes=2), "rare.jpg": BOX.format(2) * 3}
    data_yaml = make_dataset({"train": train, "val": labels_for(4, classes=2)}, names=["cat", "dog", "fox"])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["split", str(data_yaml), "--out", str(out)])
    assert result.exit_code == 0, result.output
    missing = json.loads((out / "split.json").read_text())["missing"]
    assert len(missing) == 1 and missing[0]["class"] == "fox" and missing[0]["instances"] == 3
    assert len(missing[0]["splits"]) == 1 and missing[0]["groups"] == 1
    assert "class 'fox' is too rare to appear in every split" in " ".join(result.output.split())


def test_images_folder_without_labels_is_all_backgrounds(images_labels_folder: Path, tmp_path: Path) -> None:
    shutil.rmtree(images_labels_folder / "labels")
    result = split_dataset(images_labels_folder, tmp_path / "out")
    assert any("every image is a background" in note for note in result.notes)
    splits = result.summary["splits"]
    assert splits["train"]["backgrounds"] + splits["val"]["backgrounds"] == 22
    assert splits["val"]["backgrounds"] == round(0.2 * 22)


def test_a_data_yaml_with_broken_names_is_refused(make_dataset, tmp_path: Path) -> None:
    data_yaml = make_dataset({"train": labels_for(4), "val": labels_for(2)}, names=None)
    with pytest.raises(DoctorError, match="no 'names'"):
        split_dataset(data_yaml, tmp_path / "out")


def test_cli_bad_input_is_one_line_and_exit_code_2(yaml_dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["split", str(yaml_dataset), "--out", str(tmp_path / "o"),
                                      "--ratios", "0.5,0.4"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "must sum to 1" in lines[0]
    missing = CliRunner().invoke(app, ["split", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_a_killed_split_leaves_staging_that_the_next_run_removes(yaml_dataset: Path, tmp_path: Path) -> None:
    """SIGKILL halfway (images written, data.yaml not yet): the hidden staging folder stays; the next run removes
    it and says so."""
    out = tmp_path / "out"
    code = ("import os, signal\nfrom dataset_doctor.split import pipeline\n"
            "pipeline.write_data_yaml = lambda *args: os.kill(os.getpid(), signal.SIGKILL)\n"
            f"pipeline.split_dataset({str(yaml_dataset)!r}, {str(out)!r})\n")
    repo = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(repo)}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    [staging] = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(files_under(staging)) > 22 and not out.exists()  # the images were in, the run was not finished
    result = CliRunner().invoke(app, ["split", str(yaml_dataset), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"removed {staging}" in result.output and "interrupted run" in result.output
    assert not staging.exists() and (out / "data.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

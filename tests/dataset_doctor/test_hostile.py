"""Hostile inputs to the dataset_doctor package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import hostile_outputs as outputs
from tests.dataset_doctor.dataset.test_datayaml import alias_bomb
from tests.hostile import HostileCase, invoke, run_case
from tests.odd_files import BAD_SHOWN, dataset_with_bad_name, dataset_with_huge_png, dataset_with_loops
from tests.tiny_dataset import write_tiny_dataset


def _bad_name(command: str, *options: str, label: bytes = b"1 0.5 0.5 0.2 0.2\n"):
    def build(tmp_path: Path) -> tuple[Path, list[str]]:
        yaml_path = dataset_with_bad_name(tmp_path / "data", label)
        return yaml_path.parent, [command, yaml_path, *(tmp_path / o[1:] if o.startswith("@") else o for o in options)]
    return build


def _looped(tmp_path: Path) -> tuple[Path, list[str]]:
    yaml_path = dataset_with_loops(tmp_path / "data")
    return yaml_path.parent, ["audit", yaml_path, "--no-html", "--json", tmp_path / "audit.json"]


def _huge(tmp_path: Path) -> tuple[Path, list[str]]:
    yaml_path = dataset_with_huge_png(tmp_path / "data")
    return yaml_path.parent, ["audit", yaml_path, "--no-html", "--json", tmp_path / "audit.json"]


def _huge_rebalance(tmp_path: Path) -> tuple[Path, list[str]]:
    yaml_path = dataset_with_huge_png(tmp_path / "data")
    (yaml_path.parent / "labels" / "train" / "huge.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    for number in range(3):
        (yaml_path.parent / "labels" / "train" / f"im{number}.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    return yaml_path.parent, ["rebalance", yaml_path, "--target", "3", "--out", tmp_path / "out"]


def _alias_bomb_in_names(tmp_path: Path) -> tuple[Path, list[str]]:
    source = tmp_path / "ds"
    source.mkdir()
    (source / "data.yaml").write_text(alias_bomb())
    return source, ["audit", source / "data.yaml", "--no-cache"]


def _label_edited_under_restored_mtime(tmp_path: Path) -> tuple[Path, list[str]]:
    """A cached audit, then a label rewritten with the same size and its mtime put back (as `cp -p` does)."""
    data_yaml = write_tiny_dataset(tmp_path / "ds", {"train/a": "0 0.5 0.5 0.2 0.2\n", "val/v": "1 0.5 0.5 0.2 0.2\n"})
    assert invoke(["audit", data_yaml, "--no-html"]).exit_code == 0
    label = tmp_path / "ds/labels/train/a.txt"
    stat = os.stat(label)
    label.write_text("5 0.5 0.5 0.2 0.2\n")
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return tmp_path / "ds", ["audit", data_yaml, "--no-html"]


def _labels_with_a_byte_order_mark(tmp_path: Path) -> tuple[Path, list[str]]:
    """Label files saved by Notepad: a UTF-8 BOM before line 1, which must still be a box."""
    data_yaml = write_tiny_dataset(tmp_path / "ds", {"train/a": "\ufeff0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
                                                     "val/v": "\ufeff1 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n"})
    return tmp_path / "ds", ["audit", data_yaml, "--no-html", "--no-cache"]



def _repro_rebalance_force_into_listed_folder(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    return world, ["rebalance", data_yaml, "--out", elsewhere, "--force", "--target", "12"]


def _split_force_into_listed_folder(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    return world, ["split", data_yaml, "--out", elsewhere, "--force"]


def _fix_into_listed_folder(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    return world, ["fix", data_yaml, "--out", elsewhere / "images" / "fixed"]


def _split_force_over_our_output_the_source_links_into(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.ours_that_the_source_links_into(tmp_path)
    return world, ["split", data_yaml, "--out", elsewhere, "--force"]


def _rebalance_force_over_our_output_the_source_links_into(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.ours_that_the_source_links_into(tmp_path)
    return world, ["rebalance", data_yaml, "--out", elsewhere, "--force", "--target", "12"]


def _force_over_a_folder_not_ours(command: list[str]):
    def build(tmp_path: Path) -> tuple[Path, list]:
        data_yaml = outputs.tiny_dataset(tmp_path / "world" / "data")
        mine = tmp_path / "world" / "my-photos"
        outputs.write_image(mine / "holiday.jpg", None)
        return tmp_path / "world", [command[0], data_yaml, "--out", mine, "--force", *command[1:]]
    return build


def _under_a_file(command: list[str]):
    def build(tmp_path: Path) -> tuple[Path, list]:
        data_yaml, out = outputs.under_a_file(tmp_path)
        if command[0] == "sample":
            return data_yaml.parent, ["sample", out]
        return data_yaml.parent, [command[0], data_yaml, "--out", out, *command[1:]]
    return build


def _in_read_only_folder(command: list[str]):
    def build(tmp_path: Path) -> tuple[Path, list]:
        folder = outputs.read_only_folder(tmp_path)
        data_yaml = outputs.tiny_dataset(tmp_path / "data")
        if command[0] == "sample":
            return data_yaml.parent, ["sample", folder / "out"]
        return data_yaml.parent, [command[0], data_yaml, "--out", folder / "out", *command[1:]]
    return build


_UNWRITABLE = "cannot write the output here"
_COMMANDS = [["fix"], ["split"], ["rebalance", "--target", "12"], ["sample"]]

CASES: list[HostileCase] = [
    # names, links and huge images (issue 16 items 3, 5, 9)
    HostileCase("audit-json-non-utf8-name", _bad_name("audit", "--no-html", "--json", "@audit.json",
                                                      label=b"7 0.5 0.5 0.2 0.2\n"),
                1, ("non-utf8-name", f"images/train/{BAD_SHOWN}.jpg", f"labels/train/{BAD_SHOWN}.txt:1")),
    HostileCase("rebalance-non-utf8-name", _bad_name("rebalance", "--target", "6", "--out", "@out"), 0, ("wrote",)),
    HostileCase("fix-non-utf8-name", _bad_name("fix", "--out", "@out", label=b"0 0.5 0.5 0.2 0.2\n9 1 2\n"), 0,
                ("fix_log.csv",)),
    HostileCase("split-non-utf8-name", _bad_name("split", "--out", "@out", "--ratios", "0.5,0.5"), 0, ("split",)),
    HostileCase("audit-symlink-loop", _looped, 0, ("symlink-loop", "images/train/loop links to images/train")),
    HostileCase("audit-huge-png", _huge, 0, ("huge-image", "images/train/huge.png", "32000x32000 pixels")),
    # the plan copies the huge PNG (the only image where class 1 is rarer): it cannot be augmented within the budget
    HostileCase("rebalance-huge-png", _huge_rebalance, 2, ("huge.png", "32000x32000 pixels is above the budget")),
    # parsing, cache, resume (issue 16 items 4, 7, 8, 11)
    HostileCase("yaml-alias-bomb-in-names", _alias_bomb_in_names, 2, ("data.yaml", "aliases expand to more than")),
    HostileCase("label-with-a-utf8-bom", _labels_with_a_byte_order_mark, 0, ("0 errors",)),
    HostileCase("label-edited-under-restored-mtime", _label_edited_under_restored_mtime, 1, ("class-out-of-range",)),
    # output safety (issue 16 items 1, 2, 6, 10)
    HostileCase("rebalance-force-out-is-a-folder-val-txt-lists", _repro_rebalance_force_into_listed_folder, 2,
                ("output directory contains the source dataset", "/E/images)")),
    HostileCase("split-force-out-is-a-folder-val-txt-lists", _split_force_into_listed_folder, 2,
                ("output directory contains the source dataset", "/E/images)")),
    HostileCase("fix-out-inside-a-folder-val-txt-lists", _fix_into_listed_folder, 2,
                ("output directory is inside the source dataset",)),
    HostileCase("split-force-over-our-output-a-source-image-links-into",
                _split_force_over_our_output_the_source_links_into, 2,
                ("--force would delete", "linked.jpg, which the source dataset reads")),
    HostileCase("rebalance-force-over-our-output-a-source-image-links-into",
                _rebalance_force_over_our_output_the_source_links_into, 2,
                ("--force would delete", "linked.jpg, which the source dataset reads")),
    *[HostileCase(f"{command[0]}-force-over-a-folder-not-ours", _force_over_a_folder_not_ours(command), 2,
                  ("--force replaces only a folder dataset-doctor wrote", "my-photos"))
      for command in _COMMANDS[1:3]],
    *[HostileCase(f"{command[0]}-out-below-a-regular-file", _under_a_file(command), 2,
                  (_UNWRITABLE, "a-file/out")) for command in _COMMANDS],
    *[HostileCase(f"{command[0]}-out-in-a-read-only-folder", _in_read_only_folder(command), 2,
                  (_UNWRITABLE, "Permission denied", "read-only/out")) for command in _COMMANDS],
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)

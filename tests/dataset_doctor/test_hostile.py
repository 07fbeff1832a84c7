"""Hostile inputs to the dataset_doctor package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hostile_outputs as outputs
from tests.hostile import HostileCase, run_case


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

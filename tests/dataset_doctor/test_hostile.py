"""Hostile inputs to the dataset_doctor package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile import HostileCase, run_case
from tests.odd_files import BAD_SHOWN, dataset_with_bad_name, dataset_with_huge_png, dataset_with_loops


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
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)

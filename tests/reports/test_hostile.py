"""Hostile inputs to the reports package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile import HostileCase, run_case
from tests.odd_files import BAD_SHOWN, dataset_with_bad_name, dataset_with_huge_png, dataset_with_loops


def _html_audit(make: Callable[[Path], Path]) -> Callable[[Path], tuple[Path, list[str]]]:
    def build(tmp_path: Path) -> tuple[Path, list[str]]:
        yaml_path = make(tmp_path / "data")
        return yaml_path.parent, ["audit", yaml_path, "--html", tmp_path / "audit.html", "--json",
                                  tmp_path / "audit.json"]
    return build


CASES: list[HostileCase] = [
    # names, links and huge images (issue 16 items 3, 5, 9)
    # a bad line in the oddly named file, so the report draws it (cv2.imread on its name segfaulted)
    HostileCase("audit-html-non-utf8-name",
                _html_audit(lambda root: dataset_with_bad_name(root, b"7 0.5 0.5 0.2 0.2\n")), 1,
                ("non-utf8-name", f"labels/train/{BAD_SHOWN}.txt:1", "HTML report written")),
    HostileCase("audit-html-symlink-loop", _html_audit(dataset_with_loops), 0, ("symlink-loop", "HTML report written")),
    HostileCase("audit-html-huge-png", _html_audit(dataset_with_huge_png), 0, ("huge-image", "HTML report written")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)

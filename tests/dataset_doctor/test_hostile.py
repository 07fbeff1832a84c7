"""Hostile inputs to the dataset_doctor package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dataset_doctor.test_datayaml import alias_bomb
from tests.hostile import HostileCase, run_case


def _alias_bomb_in_names(tmp_path: Path) -> tuple[Path, list[str]]:
    source = tmp_path / "ds"
    source.mkdir()
    (source / "data.yaml").write_text(alias_bomb())
    return source, ["audit", source / "data.yaml", "--no-cache"]


CASES: list[HostileCase] = [
    # parsing, cache, resume (issue 16 items 4, 7, 8, 11)
    HostileCase("yaml-alias-bomb-in-names", _alias_bomb_in_names, 2, ("data.yaml", "aliases expand to more than")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)

"""Make torch's OpenMP threads sleep, not spin, while they wait for work.

torch's CPU wheels use GNU OpenMP, whose threads busy-wait between parallel regions by default. On a 2-core
machine that spin takes the cores from the DataLoader workers and from any other process: two trainings side
by side ran at 3.3 images/s each instead of 10.8 with the passive policy, and one training next to a single
busy process at 8.2 instead of 12.6 (bench/README.md, "OpenMP wait policy"). Alone, the two policies measured
the same within noise. The variable is read once, when torch loads libgomp, so this runs from the package
__init__ files, before any module imports torch; a value the user set is kept.
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_openmp() -> None:
    """Default OMP_WAIT_POLICY to PASSIVE for this process and the workers it starts (they inherit it)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")

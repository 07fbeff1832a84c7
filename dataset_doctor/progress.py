"""A Rich progress bar counting items of long parallel jobs (scanning files, writing augmented copies)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def counting_progress(total: int, enabled: bool, verb: str, unit: str) -> Iterator[Callable[[int], None]]:
    """Yields `advance(count)`; shows "verb [bar] done/total unit ETA" (transient), or nothing when disabled."""
    if not enabled or total == 0:
        yield lambda count: None
        return
    columns = (TextColumn(verb), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(verb, total=total)
        yield lambda count: bar.advance(task, count)

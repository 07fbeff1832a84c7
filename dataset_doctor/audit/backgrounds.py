"""Background (negative) images: their share per split, and what to add when train has too few.

A background image holds no object (an empty label file, or none): it teaches the model what is *not* an
object, so false positives on the scenes it will see drop. The Darknet manual asks for as many negative images
as images with objects; Ultralytics' training tips for 0-10%. Below LOW_BACKGROUND_SHARE of the train images
the audit says so, with both targets as numbers: images to add to reach that share, and to reach Darknet's
parity. Only train is advised on (negatives in val measure false positives, they do not prevent them).
"""

from __future__ import annotations

import math

import pandas as pd

from dataset_doctor.findings import NextStep

LOW_BACKGROUND_SHARE = 0.10  # below this share of the train images the next steps ask for more backgrounds
TRAIN = "train"


def background_shares(split_summary: pd.DataFrame) -> dict[str, float]:
    """Backgrounds / readable images per split (NaN for a split with no readable image)."""
    shares = {}
    for row in split_summary.itertuples(index=False):
        shares[row.split] = row.backgrounds / row.readable if row.readable else math.nan
    return shares


def images_to_add(backgrounds: int, readable: int, share: float) -> int:
    """Background images to add so that they make up `share` of the split: (b + x) / (n + x) >= share."""
    return max(math.ceil((share * readable - backgrounds) / (1 - share) - 1e-9), 0)


def background_step(split_summary: pd.DataFrame) -> NextStep | None:
    """The next step when train holds fewer backgrounds than LOW_BACKGROUND_SHARE of its images, else None."""
    rows = split_summary[split_summary["split"] == TRAIN]
    if rows.empty or not int(rows["readable"].iloc[0]):
        return None
    readable, backgrounds = int(rows["readable"].iloc[0]), int(rows["backgrounds"].iloc[0])
    share = backgrounds / readable
    if share >= LOW_BACKGROUND_SHARE:
        return None
    with_objects = readable - backgrounds
    return NextStep(
        f"Add background images to train: only {backgrounds} of {readable} train images ({100 * share:.1f}%) hold "
        f"no object. Images of the scenes the model will see, without any of the classes (and an empty label "
        f"file each), teach it what is not an object and cut false positives: add at least "
        f"{images_to_add(backgrounds, readable, LOW_BACKGROUND_SHARE)} to reach "
        f"{100 * LOW_BACKGROUND_SHARE:.0f}% (Ultralytics' tips: 0-10%), up to {max(with_objects - backgrounds, 0)} "
        f"for as many negatives as images with objects (the Darknet manual). doctor rebalance keeps them all.")

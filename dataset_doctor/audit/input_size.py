"""What input size the dataset needs: per class, how many boxes end up under 8 and 16 px at `--imgsz`, and the
smallest `--imgsz` (a multiple of 32) that brings the median box of every small class up to TARGET_SIDE_PX.

A box's size here is its shorter side in pixels once the image is letterboxed to imgsz (the measure tiny-box
uses). Why 16 px: the finest detection level of the default model has stride 8, and the assigner only matches a
box to anchor points whose centre lies inside it (trainer/model/assign.py); a box under 8 px may hold no anchor
centre at all, one under 16 px only one or two. Letterboxing scales every box by imgsz / long image side, so box
sides grow linearly with imgsz and the compute of a forward pass with its square: the cost of the suggestion is
(new / old)^2 x FLOPs. The other remedy is a stride-4 level (`doctor train --model n-p2`), which halves the side
a box needs, at about the FLOPs the table of README.md gives.

Train boxes decide: they are what the model learns from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SMALL_SIDES_PX = (8, 16)  # the table's two thresholds
TARGET_SIDE_PX = 16.0  # the median box of each small class should reach this at the suggested imgsz
MAX_SUGGESTED_IMGSZ = 1920  # beyond this, tile the images or use a P2 model instead
TRAIN = "train"
INPUT_SIZE_COLUMNS = ["class_id", "class", "boxes", "under_8", "under_16", "median_side"]


@dataclass(frozen=True)
class InputSizeAdvice:
    """The suggestion: a larger --imgsz, which classes need it, and what it costs."""

    imgsz: int  # the audited --imgsz
    suggested: int  # a multiple of 32 (capped at MAX_SUGGESTED_IMGSZ)
    small_classes: list[str]  # classes whose median train box is under TARGET_SIDE_PX, smallest first
    smallest_median: float  # px at imgsz, of the smallest class
    reached_median: float  # that class's median at the suggested size

    @property
    def flops_factor(self) -> float:
        return (self.suggested / self.imgsz) ** 2

    @property
    def capped(self) -> bool:
        return self.reached_median < TARGET_SIDE_PX


def short_sides(geometry: pd.DataFrame) -> np.ndarray:
    """Shorter box side in pixels at imgsz, per row of box_stats.box_geometry."""
    return np.minimum(geometry["width_imgsz"].to_numpy(), geometry["height_imgsz"].to_numpy())


def input_size_table(geometry: pd.DataFrame, names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Per class: train boxes, share under 8 and under 16 px at imgsz, median short side (NaN with no box).
    Without box geometry (a classification dataset has no boxes) every class has no box."""
    if "width_imgsz" not in geometry:
        geometry = pd.DataFrame({"split": [], "cls": [], "width_imgsz": [], "height_imgsz": []})
    train = geometry[geometry["split"] == TRAIN]
    sides = short_sides(train)
    classes = train["cls"].to_numpy().astype(np.int64)
    rows = []
    for class_id, name in enumerate(names):
        mine = sides[classes == class_id]
        rows.append({"class_id": class_id, "class": name, "boxes": len(mine),
                     "under_8": float((mine < SMALL_SIDES_PX[0]).mean()) if len(mine) else math.nan,
                     "under_16": float((mine < SMALL_SIDES_PX[1]).mean()) if len(mine) else math.nan,
                     "median_side": float(np.median(mine)) if len(mine) else math.nan})
    return pd.DataFrame(rows, columns=INPUT_SIZE_COLUMNS)


def suggest_imgsz(table: pd.DataFrame, imgsz: int) -> InputSizeAdvice | None:
    """The smallest multiple of 32 above imgsz at which every class's median side reaches TARGET_SIDE_PX (None
    when every class already does)."""
    small = table[table["median_side"] < TARGET_SIDE_PX].sort_values("median_side", kind="stable")
    if small.empty:
        return None
    smallest = float(small["median_side"].iloc[0])
    needed = imgsz * TARGET_SIDE_PX / max(smallest, 1e-9)
    suggested = max(min(math.ceil(needed / 32) * 32, MAX_SUGGESTED_IMGSZ), imgsz)
    return InputSizeAdvice(imgsz, suggested, small["class"].astype(str).tolist(), smallest,
                           smallest * suggested / imgsz)


def advice_sentence(advice: InputSizeAdvice, table: pd.DataFrame) -> str:
    """The next step's text: the numbers, the suggestion and its cost, and the P2 alternative."""
    smallest = table.set_index("class").loc[advice.small_classes[0]]
    shown = advice.small_classes[:4]
    more = f" and {len(advice.small_classes) - len(shown)} more" if len(advice.small_classes) > len(shown) else ""
    names = ", ".join(f"'{name}'" for name in shown) + more
    reach = (f"brings the median '{advice.small_classes[0]}' box to {advice.reached_median:.1f} px"
             + (f" (still under {TARGET_SIDE_PX:g} px: tile the images, or use a P2 model)" if advice.capped
                else f", above {TARGET_SIDE_PX:g} px"))
    return (f"Small objects: the median train box of {names} is under {TARGET_SIDE_PX:g} px at --imgsz "
            f"{advice.imgsz} ('{advice.small_classes[0]}': {advice.smallest_median:.1f} px, "
            f"{100 * smallest['under_8']:.0f}% of its boxes under 8 px, {100 * smallest['under_16']:.0f}% under "
            f"16 px). --imgsz {advice.suggested} {reach}, at {advice.flops_factor:.1f}x the FLOPs "
            f"(({advice.suggested}/{advice.imgsz})^2). Or keep the size and add a stride-4 level: --model n-p2.")

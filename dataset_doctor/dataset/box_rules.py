"""Which boxes are unusable for training, vectorised: the error-level box checks of design.md section 2.

One definition shared by the audit (to report them), and by weights, rebalance and the trainer (to skip
them), so a box the audit calls an error is never counted or trained on anywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUT_OF_BOUNDS_TOLERANCE = 0.01  # fraction of the image side a box may overhang before it is an error


def box_error_checks(boxes: pd.DataFrame, nc: int, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> pd.Series:
    """Per box: the id of the first error check it fails ('' if none), in design.md's order."""
    cls = boxes["cls"].to_numpy()
    cx, cy, w, h = (boxes[c].to_numpy() for c in ("cx", "cy", "w", "h"))
    checks = np.full(len(boxes), "", dtype=object)
    out_of_bounds = ((cx - w / 2 < -tolerance) | (cx + w / 2 > 1 + tolerance)
                     | (cy - h / 2 < -tolerance) | (cy + h / 2 > 1 + tolerance))
    degenerate = (w <= 0) | (h <= 0)
    bad_class = (cls < 0) | (cls >= nc)
    # Assign in reverse priority so the most specific reason wins.
    checks[out_of_bounds] = "out-of-bounds"
    checks[degenerate] = "degenerate-box"
    checks[bad_class] = "class-out-of-range"
    return pd.Series(checks, index=boxes.index, name="error")


def box_error_message(check: str, row: pd.Series, nc: int) -> str:
    """A one-line explanation of why one box failed `check`."""
    if check == "class-out-of-range":
        return f"class {int(row.cls)} is outside 0..{nc - 1}" if nc else f"class {int(row.cls)}: no names defined"
    if check == "degenerate-box":
        return f"zero or negative size (w={row.w:g}, h={row.h:g})"
    if check == "out-of-bounds":
        x1, y1, x2, y2 = row.cx - row.w / 2, row.cy - row.h / 2, row.cx + row.w / 2, row.cy + row.h / 2
        return f"box extends outside the image (x1={x1:.3f} y1={y1:.3f} x2={x2:.3f} y2={y2:.3f})"
    raise ValueError(check)

"""scale-shift: a class whose val boxes are drawn from a different size distribution than its train boxes.

Per class, a two-sample Kolmogorov-Smirnov test on log box area at the training size (what the model sees
after letterboxing; the KS statistic is unchanged by the log, which only makes medians and plots readable).
Three guards keep it from crying wolf:
- both sides need `shift_min_instances` boxes, or the test is not run;
- the p-value must pass a Bonferroni-corrected level (alpha / classes tested), since one test runs per class;
- the KS statistic D (the largest gap between the two cumulative distributions, itself an effect size) must
  reach `shift_min_effect`: with 100k boxes a trivial shift is "significant", not worth a warning.
In a `doctor rebalance` output (`train_sources`, from its rebalance.json) the train boxes are copies and pastes
of fewer source boxes; the test counts the distinct ones (the guard and the p-value's n), since a copy is no
new observation: 500 boxes made from 6 are as untestable as the 6 were, and D is measured on all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import kolmogorov
from scipy.stats import ks_2samp

from dataset_doctor.audit.finding_table import finding_rows
from dataset_doctor.audit.options import AuditOptions

_EXACT_KS_LIMIT = 10_000  # n_train * n_val up to which the KS p-value is computed exactly
SHIFT_COLUMNS = ["class_id", "class", "train_instances", "val_instances", "tested", "statistic", "p_value",
                 "train_median_side", "val_median_side", "side_ratio", "train_sources", "flagged"]


def scale_shift_table(geometry: pd.DataFrame, names: list[str] | tuple[str, ...], options: AuditOptions,
                      train: str = "train", val: str = "val",
                      train_sources: np.ndarray | None = None) -> pd.DataFrame:
    """One row per class: instance counts, KS statistic and p-value where tested, median box side (square root
    of the area) at imgsz in each split, the distinct train boxes counted, and whether it is flagged.

    `train_sources`: per class, how many distinct boxes the train boxes were made from (a rebalance output).
    """
    nc = len(names)
    split = geometry["split"].astype(str).to_numpy()
    cls = geometry["cls"].to_numpy()
    log_area = np.log(np.maximum(geometry["area_imgsz"].to_numpy(), 1e-12))
    samples = {}
    for name in (train, val):
        in_split = split == name
        order = np.argsort(cls[in_split], kind="stable")
        values, classes = log_area[in_split][order], cls[in_split][order]
        bounds = np.searchsorted(classes, np.arange(nc + 1))
        samples[name] = [values[bounds[k]:bounds[k + 1]] for k in range(nc)]

    rows = []
    for k in range(nc):
        a, b = np.sort(samples[train][k]), np.sort(samples[val][k])
        distinct = len(a) if train_sources is None else int(min(len(a), train_sources[k]))
        tested = min(distinct, len(b)) >= options.shift_min_instances
        statistic = p_value = np.nan
        if tested:
            statistic, p_value = _ks_test(a, b) if distinct == len(a) else _ks_test_copies(a, b, distinct)
        train_side = float(np.exp(np.median(a) / 2)) if len(a) else np.nan
        val_side = float(np.exp(np.median(b) / 2)) if len(b) else np.nan
        rows.append((k, names[k], len(a), len(b), tested, statistic, p_value, train_side, val_side,
                     val_side / train_side if len(a) and len(b) else np.nan, distinct))
    table = pd.DataFrame(rows, columns=SHIFT_COLUMNS[:-1])
    tests = int(table["tested"].sum())
    level = options.shift_alpha / max(tests, 1)
    table["flagged"] = (table["tested"] & (table["p_value"] < level)
                        & (table["statistic"] >= options.shift_min_effect)).astype(bool)
    return table


def _ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS test on sorted samples: (D, p-value).

    D is the largest gap between the two empirical CDFs, evaluated at every sample value (as ks_2samp). The
    p-value is exact for small samples (scipy, cost O(n_a * n_b)); beyond, Smirnov's limiting distribution:
    P(sqrt(n) D > x) -> kolmogorov(x) with n = n_a n_b / (n_a + n_b) (Smirnov 1948), a ufunc, where scipy's
    finite-n kstwo costs half a millisecond per class.
    """
    if len(a) * len(b) <= _EXACT_KS_LIMIT:
        result = ks_2samp(a, b, method="exact")
        return float(result.statistic), float(result.pvalue)
    values = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, values, side="right") / len(a) - np.searchsorted(b, values, side="right") / len(b))
    statistic = float(gap.max())
    effective = len(a) * len(b) / (len(a) + len(b))
    return statistic, float(np.clip(kolmogorov(np.sqrt(effective) * statistic), 0, 1))


def _ks_test_copies(a: np.ndarray, b: np.ndarray, distinct: int) -> tuple[float, float]:
    """D on every box of `a`, the p-value from Smirnov's limit with `distinct` train observations."""
    values = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, values, side="right") / len(a) - np.searchsorted(b, values, side="right") / len(b))
    statistic = float(gap.max())
    effective = distinct * len(b) / (distinct + len(b))
    return statistic, float(np.clip(kolmogorov(np.sqrt(effective) * statistic), 0, 1))


def scale_shift_findings(table: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    flagged = table[table["flagged"]]
    messages = [
        f"class '{row['class']}': median box side in val is {row['side_ratio']:.2f}x train's "
        f"({row['val_median_side']:.3g} vs {row['train_median_side']:.3g} px at --imgsz {options.imgsz}; "
        f"KS D={row['statistic']:.2f}, p={row['p_value']:.1e}, {row['train_instances']} train / "
        f"{row['val_instances']} val boxes"
        f"{_made_from(row['train_sources'], row['train_instances'])})"
        for _, row in flagged.iterrows()]
    return finding_rows("scale-shift", split="val", message=messages)


def _made_from(sources: int, instances: int) -> str:
    return "" if sources == instances else f", train made from {sources} distinct boxes"

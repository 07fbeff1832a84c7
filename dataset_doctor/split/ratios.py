"""Parsing `--ratios 0.8,0.2[,0.1]` into named split ratios: train, val and an optional test."""

from __future__ import annotations

import math

from dataset_doctor.errors import DoctorError

SPLIT_NAMES = ("train", "val", "test")
_SUM_TOLERANCE = 1e-6


def parse_ratios(text: str | list[float] | tuple[float, ...]) -> dict[str, float]:
    """{"train": r, "val": r[, "test": r]} from "0.8,0.2[,0.1]" (or a sequence); a test ratio of 0 is dropped.

    Train and val must be positive (a split without val cannot be evaluated), every ratio in [0, 1], and the
    ratios must sum to 1: silently renormalising "0.8,0.3" would hide a typo.
    """
    values = _as_numbers(text)
    if len(values) not in (2, 3):
        raise DoctorError(f"--ratios needs 2 or 3 numbers (train,val[,test]), got {len(values)}: {_shown(text)}")
    for name, value in zip(SPLIT_NAMES, values):
        if not math.isfinite(value) or not 0 <= value <= 1:
            raise DoctorError(f"--ratios: the {name} ratio must be between 0 and 1, got {value:g}")
    for name, value in zip(SPLIT_NAMES[:2], values):
        if value == 0:
            raise DoctorError(f"--ratios: the {name} ratio must be above 0")
    total = sum(values)
    if abs(total - 1) > _SUM_TOLERANCE:
        raise DoctorError(f"--ratios must sum to 1, got {_shown(text)} (sum {total:g})")
    return {name: value for name, value in zip(SPLIT_NAMES, values) if value > 0}


def _as_numbers(text: str | list[float] | tuple[float, ...]) -> list[float]:
    if not isinstance(text, str):
        return [float(value) for value in text]
    parts = [part.strip() for part in text.replace(";", ",").split(",")]
    if any(not part for part in parts):
        raise DoctorError(f"--ratios: empty value in {text!r} (expected e.g. 0.8,0.2 or 0.7,0.2,0.1)")
    values = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            raise DoctorError(f"--ratios: {part!r} is not a number (expected e.g. 0.8,0.2 or 0.7,0.2,0.1)") from None
    return values


def _shown(text: str | list[float] | tuple[float, ...]) -> str:
    return text if isinstance(text, str) else ",".join(f"{value:g}" for value in text)

"""Checkpoints: state dicts and plain data only, written atomically, loaded with weights_only=True.

A checkpoint holds everything `--resume` needs to continue exactly where a killed run stopped: model, EMA,
optimizer and AMP scaler states, the epoch, the best fitness so far, the resolved settings and the RNG states.
Nothing in it is a pickled class, so loading one can never run code.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset_doctor.atomic import atomic_write
from dataset_doctor.errors import DoctorError

CHECKPOINT_FORMAT = "dataset-doctor-yolo/1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then rename over it."""
    atomic_write(path, lambda temporary: torch.save({"format": CHECKPOINT_FORMAT, **state}, temporary))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint; a one-line DoctorError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DoctorError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise DoctorError(f"not a readable dataset-doctor checkpoint ({_load_failure_reason(error)})", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DoctorError("not a dataset-doctor checkpoint (wrong format marker)", path)
    return state


def _load_failure_reason(error: Exception) -> str:
    """Why torch.load refused a file, in a few words and without torch's advice to retry with
    weights_only=False: that advice runs whatever code the file holds, and our checkpoints never need it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch colours part of its message
    if "WeightsUnpickler error:" in text:
        detail = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines()
                       if line.strip()), "")
        if detail.startswith("Unsupported global: GLOBAL "):
            name = detail.removeprefix("Unsupported global: GLOBAL ").split(" was not an allowed global")[0]
            return f"it holds Python objects a safe load refuses: {name}"
        return f"damaged, or not a torch file: {detail or 'unreadable pickle'}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0].split(". ")[0] if lines else type(error).__name__  # torch's first sentence says what failed


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain data / tensors (weights_only-loadable)."""
    numpy_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "position": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "torch": torch.get_rng_state(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    python = states["python"]
    random.setstate((python[-1], tuple(python[:-1]), None))
    keys = states["numpy"]["keys"].numpy().astype(np.uint32)
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", keys, numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])

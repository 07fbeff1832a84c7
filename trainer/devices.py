"""Choosing the device and the mixed-precision mode from `--device` and `--amp`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from dataset_doctor.errors import DoctorError


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    gpu_ids: tuple[int, ...]  # several ids: a distributed run, one process per GPU
    amp_dtype: torch.dtype | None  # autocast dtype on CUDA; None: full precision

    @property
    def distributed(self) -> bool:
        return len(self.gpu_ids) > 1

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has float32's exponent range and needs none."""
        return self.amp_dtype == torch.float16


def choose_device(spec: str, amp: bool = True) -> DeviceChoice:
    """'' (cuda if available), 'cpu', 'cuda', '0', or '0,1,2,3'."""
    spec = spec.strip().lower().replace("cuda:", "")
    if spec == "cpu" or (spec == "" and not torch.cuda.is_available()):
        return DeviceChoice(torch.device("cpu"), (), None)
    if spec in ("", "cuda"):
        spec = "0"
    try:
        ids = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise DoctorError(f"--device must be cpu, cuda, a GPU id or a list like 0,1; got {spec!r}") from None
    if not torch.cuda.is_available():
        raise DoctorError(f"--device {spec} asks for a GPU, but torch sees none (a CPU build of torch?); "
                          "use --device cpu")
    missing = [i for i in ids if i >= torch.cuda.device_count()]
    if missing or not ids or len(set(ids)) != len(ids):
        raise DoctorError(f"--device {spec}: this machine has {torch.cuda.device_count()} GPU(s)")
    amp_dtype = None
    if amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DeviceChoice(torch.device("cuda", ids[0]), ids, amp_dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA when enabled; a no-op context elsewhere."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)

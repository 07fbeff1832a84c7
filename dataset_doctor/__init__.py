"""dataset-doctor: find, fix and train around the data problems that make YOLO detectors bad."""

from dataset_doctor.openmp_policy import prefer_passive_openmp

prefer_passive_openmp()  # before anything imports torch

from dataset_doctor.errors import DoctorError  # noqa: E402

__all__ = ["DoctorError"]
__version__ = "0.1.0"

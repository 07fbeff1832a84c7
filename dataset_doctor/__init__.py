"""dataset-doctor: find, fix and train around the data problems that make YOLO detectors bad."""

from dataset_doctor.errors import DoctorError

__all__ = ["DoctorError"]
__version__ = "0.1.0"

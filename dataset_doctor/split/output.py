"""Writing a new dataset safely: refuse unsafe destinations, build it in a temporary sibling, then rename.

The source is never written to: images are copied or linked (`--link`), labels are always copied as they
are, since a labelling tool editing a linked label in the new dataset would silently edit the source. A run
that fails or is interrupted leaves no half-written dataset behind, and an existing destination is replaced
(with --force) only once the new one is complete.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from dataset_doctor.atomic import check_output_folder
from dataset_doctor.dataset.datayaml import DatasetConfig, files_read, folders_read
from dataset_doctor.errors import DoctorError

LINK_MODES = ("copy", "hardlink", "symlink")
# Errors meaning "this filesystem pair cannot hardlink": across devices, or not supported / not permitted.
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def check_destination(out: str | Path, config: DatasetConfig, force: bool) -> Path:
    """The absolute destination, or a DoctorError: atomic.check_output_folder with every folder and file the
    source reads (a non-empty destination only with --force, and only an earlier output of ours)."""
    return check_output_folder(out, force=force, source_folders=folders_read(config),
                               source_files=lambda: files_read(config))


def place_image(source: str | Path, target: Path, mode: str) -> str:
    """Copy or link one file; returns the mode used ('copy' when a hardlink is impossible here)."""
    try:
        if mode == "symlink":
            os.symlink(os.path.abspath(source), target)
            return mode
        if mode == "hardlink":
            try:
                os.link(source, target)
                return mode
            except OSError as error:
                if error.errno not in _NO_HARDLINK:
                    raise
        shutil.copy2(source, target)
        return "copy"
    except OSError as error:
        raise DoctorError(f"cannot write {target.name}: {error.strerror or error}", source) from None


def copy_label(source: str | Path, target: Path) -> None:
    """Copy a label file byte for byte: splitting is not fixing (bad lines stay, for `doctor fix`)."""
    try:
        shutil.copyfile(source, target)
    except OSError as error:
        raise DoctorError(f"cannot copy label to {target.name}: {error.strerror or error}", source) from None

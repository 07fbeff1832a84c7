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
from collections.abc import Iterable
from pathlib import Path

from dataset_doctor.errors import DoctorError

LINK_MODES = ("copy", "hardlink", "symlink")
# Errors meaning "this filesystem pair cannot hardlink": across devices, or not supported / not permitted.
_NO_HARDLINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


def check_destination(out: str | Path, source_dirs: Iterable[str | Path], force: bool) -> Path:
    """The absolute destination, after refusing a non-empty one (unless force) and one overlapping a source.

    Overlap both ways is refused: writing inside the source changes it, and with --force replacing a folder
    that holds the source would delete it.
    """
    destination = Path(os.path.abspath(Path(out).expanduser()))
    if destination.exists() or destination.is_symlink():
        if not destination.is_dir():
            raise DoctorError("exists and is not a directory", destination)
        if any(destination.iterdir()) and not force:
            raise DoctorError("output directory is not empty: choose a new one or pass --force to replace it",
                              destination)
    resolved = destination.resolve()
    for directory in sorted({Path(os.path.abspath(d)).resolve() for d in source_dirs}):
        if resolved == directory or directory in resolved.parents:
            raise DoctorError(f"output directory is inside the source dataset ({directory}): choose a path "
                              "outside it", destination)
        if resolved in directory.parents:
            raise DoctorError(f"output directory contains the source dataset ({directory}): choose a path "
                              "outside it", destination)
    return destination


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

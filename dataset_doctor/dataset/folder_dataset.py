"""A dataset given as a data.yaml, a directory holding one, or a plain folder of images with YOLO labels.

Many people start from a folder exported by a labelling tool, not from a data.yaml with splits. Such a folder
becomes a one-split `DatasetConfig` (split name `FOLDER_SPLIT`), so `build_index` scans, caches and parses it
exactly as it does a data.yaml dataset. Two layouts are understood:
- `images/` + `labels/` (any subfolders below, mirrored; the usual YOLO layout);
- labels next to the images (`photo.jpg` + `photo.txt`), the layout LabelImg and many exports write.
Class names come from a data.yaml without splits or a `classes.txt` (in the folder or its `labels/`); failing
both they are numbered from the largest class id seen, with a note.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dataset_doctor.dataset.datayaml import (
    DatasetConfig,
    _parse_names,
    _read_yaml_mapping,
    label_path_for,
    load_data_yaml,
    safe_load_bounded,
)
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError

FOLDER_SPLIT = "images"  # the one split of a plain folder
_YAML_NAMES = ("data.yaml", "data.yml")
_MAX_INFERRED_CLASSES = 10_000  # a larger class id is a broken label, not a class


def load_dataset_source(path: str | Path) -> tuple[DatasetConfig, list[str]]:
    """The DatasetConfig for a data.yaml, a directory with a data.yaml that has splits, or a plain folder.

    Returns the config and notes worth telling the user (where names came from, layout surprises).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DoctorError("not found", path)
    if path.is_file():
        return load_data_yaml(path), []
    yaml_file = next((path / name for name in _YAML_NAMES if (path / name).is_file()), None)
    if yaml_file is not None and _defines_splits(yaml_file):
        return load_data_yaml(yaml_file), []
    return folder_config(path)


def folder_config(folder: Path) -> tuple[DatasetConfig, list[str]]:
    """A one-split config over a plain folder of images and YOLO labels (see the module docstring)."""
    folder = folder.resolve()
    notes: list[str] = []
    images_dir = folder / "images"
    if images_dir.is_dir():
        source = images_dir
        if not (folder / "labels").is_dir():
            notes.append(f"{folder}: images/ has no labels/ folder beside it: every image is a background")
    else:
        source = folder
        label_dir = label_path_for(folder / "image.jpg").parent
        if label_dir != folder and not label_dir.is_dir():
            # label_path_for maps the last /images/ component to /labels/ (the YOLO rule): labels beside the
            # images cannot be found inside a folder named images.
            raise DoctorError(f"labels are looked up in {label_dir} (the YOLO images/ -> labels/ rule), which "
                              "does not exist: keep labels beside images in a folder not named 'images'", folder)
    names = _folder_names(folder)
    config = DatasetConfig(yaml_path=folder, root=folder, names=tuple(names), splits={FOLDER_SPLIT: (source,)},
                           raw={"names": list(names)})
    return config, notes


def with_inferred_names(index: DatasetIndex) -> tuple[DatasetIndex, list[str]]:
    """An index without class names gets '0'..'k' up to the largest class id in its labels, and a note."""
    if index.nc:
        return index, []
    classes = index.boxes["cls"].to_numpy()
    classes = classes[classes >= 0]
    if not len(classes):
        return index, [f"{index.config.yaml_path}: no class names and no boxes"]
    largest = int(classes.max())
    if largest >= _MAX_INFERRED_CLASSES:
        raise DoctorError(f"no class names and a class id of {largest} in the labels: give the names in "
                          "classes.txt (one per line) or a data.yaml", index.config.yaml_path)
    names = tuple(str(i) for i in range(largest + 1))
    config = dataclasses.replace(index.config, names=names, raw={**index.config.raw, "names": list(names)})
    used = np.unique(classes).size
    note = (f"{index.config.yaml_path}: no classes.txt or data.yaml names: {len(names)} classes named "
            f"'0'..'{largest}' from the largest class id ({used} ids used); add a classes.txt to name them")
    return dataclasses.replace(index, config=config), [note]


def _defines_splits(yaml_file: Path) -> bool:
    """True when the yaml is a dataset definition (train/val keys); unreadable yamls count too, to report them."""
    try:
        raw = safe_load_bounded(yaml_file.read_text(encoding="utf-8"), yaml_file)
    except (OSError, UnicodeDecodeError, DoctorError):
        return True  # load_data_yaml will say what is wrong with it
    return not isinstance(raw, dict) or "train" in raw or "val" in raw


def _folder_names(folder: Path) -> list[str]:
    """From a names-only data.yaml, else classes.txt in the folder or its labels/; [] when there is neither."""
    for name in _YAML_NAMES:
        yaml_file = folder / name
        if yaml_file.is_file():
            raw = _read_yaml_mapping(yaml_file)
            if raw.get("names") is not None:
                names, problems = _parse_names(raw, yaml_file)
                if problems:
                    raise DoctorError(problems[0].message, yaml_file)
                return list(names)
    for classes_file in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if classes_file.is_file():
            return _read_classes_txt(classes_file)
    return []


def _read_classes_txt(path: Path) -> list[str]:
    """One class name per line, line n naming class n - 1; blank lines only at the end."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DoctorError(f"cannot read class names: {error}", path) from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DoctorError("no class names in it", path)
    for number, line in enumerate(lines, start=1):
        if not line:
            raise DoctorError("blank line among the class names: every line names the class id of its position",
                              path, number)
    return lines

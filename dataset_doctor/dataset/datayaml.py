"""Reading a YOLO `data.yaml` the way YOLOv5 / Ultralytics users expect (design.md section 1).

Everything a later stage needs to find the files is resolved here once: the dataset root, each split's
sources (directories, `.txt` lists, or lists of those) and the class names. Problems with `names` / `nc`
are not fatal: they become `names-mismatch` findings so `doctor audit` can report them; commands that
train or write data call `DatasetConfig.require_valid_names()` instead.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import Finding

IMAGE_EXTENSIONS = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})
REQUIRED_SPLITS = ("train", "val")
MAX_YAML_BYTES = 8 * 2**20  # a data.yaml is a few lines; 8 MiB leaves room for 10,000 long names
MAX_YAML_VALUES = 1_000_000  # values a data.yaml may hold once its aliases are expanded (an alias bomb holds 10^9)
MAX_NAMES = 10_000  # classes in `names` (Open Images has 600; LVIS 1,203)
MAX_NAME_CHARS = 256  # characters of one class name
OPTIONAL_SPLITS = ("test",)


@dataclass(frozen=True)
class DatasetConfig:
    """A resolved data.yaml: absolute paths, names as a list, and what was wrong with `names`."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]  # split -> its sources: image directories, .txt lists or image files
    raw: dict[str, Any] = field(repr=False)  # the yaml as parsed, for writing derived data.yaml files
    problems: tuple[Finding, ...] = ()  # names-mismatch findings

    @property
    def nc(self) -> int:
        return len(self.names)

    def require_valid_names(self) -> None:
        """Raise the first names problem: training on misnumbered classes silently teaches the wrong thing."""
        if self.problems:
            raise DoctorError(self.problems[0].message, self.yaml_path)


def is_image_file(path: str | Path) -> bool:
    return str(path).rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def label_path_for(image_path: str | Path) -> Path:
    """The label file of an image: last `/images/` component -> `/labels/`, extension -> `.txt`.

    Without an `images` component the label sits next to the image (`photo.jpg` -> `photo.txt`).
    """
    return Path(label_path_text(str(image_path)))


def label_path_text(image_path: str) -> str:
    """label_path_for on plain strings: the index maps every image of a dataset with it, and Path objects cost
    more than the rest of a warm index build."""
    text = image_path
    images_part, labels_part = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images_part in text:
        head, tail = text.rsplit(images_part, 1)
        text = f"{head}{labels_part}{tail}"
    stem = text.rsplit(".", 1)[0] if "." in text.rsplit(os.sep, 1)[-1] else text
    return f"{stem}.txt"


def label_paths_text(image_paths: list[str]) -> list[str]:
    """label_path_text of every path, each folder's label folder worked out once: the same strings, about half
    the time on a warm index build. (A file name holds no separator, so the last /images/ of a path is in its
    folder part, followed by the separator before the name.)"""
    label_folders: dict[str, str] = {}
    labels = []
    for path in image_paths:
        folder, separator, name = path.rpartition(os.sep)
        folder += separator  # "" for a bare name, which is not the root folder "/"
        label_folder = label_folders.get(folder)
        if label_folder is None:
            label_folder = label_folders[folder] = label_path_text(f"{folder}x")[: -len("x.txt")]
        dot = name.rfind(".")
        labels.append(f"{label_folder}{name[:dot] if dot >= 0 else name}.txt")
    return labels


def load_data_yaml(path: str | Path) -> DatasetConfig:
    """Parse and resolve a data.yaml. Raises DoctorError (one line, naming the file) on anything unusable."""
    yaml_path = _find_yaml(Path(path))
    raw = _read_yaml_mapping(yaml_path)
    root = _resolve_root(yaml_path, raw)
    names, problems = _parse_names(raw, yaml_path)

    splits: dict[str, tuple[Path, ...]] = {}
    for split in REQUIRED_SPLITS + OPTIONAL_SPLITS:
        value = raw.get(split)
        if value in (None, "", []):
            if split in REQUIRED_SPLITS:
                raise DoctorError(f"no '{split}' split: add '{split}: images/{split}' (a directory or .txt list)",
                                  yaml_path)
            continue
        splits[split] = tuple(_resolve_source(root, entry, split, yaml_path) for entry in _as_list(value, split,
                                                                                                   yaml_path))
    return DatasetConfig(yaml_path=yaml_path, root=root, names=names, splits=splits, raw=raw,
                         problems=tuple(problems))


def list_split_images(config: DatasetConfig, split: str) -> list[Path]:
    """Every image of one split, in a stable order. Raises DoctorError when the split holds none."""
    return [Path(path) for path in list_split_image_files(config, split)]


def list_split_image_files(config: DatasetConfig, split: str, skipped_links: list[str] | None = None) -> list[str]:
    """list_split_images as plain strings (what the index works with; no Path object per file).

    Directory links to a directory already scanned are not followed (a link to `.` or to a parent would repeat
    every image, or never end); their paths are appended to `skipped_links` when given.
    """
    images: list[str] = []
    for source in config.splits[split]:
        images.extend(_images_in_source(source, config.root, skipped_links if skipped_links is not None else []))
    if not images:
        sources = ", ".join(str(s) for s in config.splits[split])
        raise DoctorError(f"split '{split}' has no images (looked in {sources})", config.yaml_path)
    return images


def folders_read(config: DatasetConfig, with_root: bool = True) -> set[Path]:
    """Every folder the dataset reads from, resolved: writing inside one changes the dataset, replacing one
    around it deletes it.

    Image folders named in the splits (scanned recursively) and their label folders, the folders of images a
    `.txt` list names (a list can point anywhere) and of their labels, and with `with_root` the dataset root and
    the data.yaml's folder too (where the lists and the yaml live). Lists are read; folders are not walked.
    """
    folders = {config.root} if with_root else set()
    if with_root and config.yaml_path.is_file():
        folders.add(config.yaml_path.parent)
    for sources in config.splits.values():
        for source in sources:
            if source.is_dir():
                folders.update((source, label_path_for(source / "image.jpg").parent))
                continue
            if with_root:
                folders.add(source.parent)
            images = _images_in_list_file(source, config.root) if source.suffix.lower() == ".txt" else [source]
            for image in images:
                folders.update((image.parent, label_path_for(image).parent))
    return {Path(os.path.realpath(folder)) for folder in folders}


def files_read(config: DatasetConfig) -> Iterator[str]:
    """Every file the dataset reads: data.yaml, the .txt lists, each image and its label (missing ones too).

    What `--force` must never delete. Generated lazily: it walks the image folders.
    """
    if config.yaml_path.is_file():
        yield str(config.yaml_path)
    for split, sources in config.splits.items():
        yield from (str(source) for source in sources if not source.is_dir())
        for image in list_split_image_files(config, split):
            yield image
            yield label_path_text(image)


def _find_yaml(path: Path) -> Path:
    path = path.expanduser()
    if path.is_dir():
        candidates = [path / "data.yaml", path / "data.yml"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DoctorError("directory holds no data.yaml", path)
        path = found
    if not path.exists():
        raise DoctorError("file not found", path)
    if not path.is_file():
        raise DoctorError("not a file", path)
    return path.resolve()


def _read_yaml_mapping(yaml_path: Path) -> dict[str, Any]:
    try:
        with yaml_path.open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as error:
        raise DoctorError(f"cannot read: {error}", yaml_path) from None
    if len(data) > MAX_YAML_BYTES:
        raise DoctorError(f"larger than {MAX_YAML_BYTES // 2**20} MiB: not a data.yaml", yaml_path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DoctorError(f"cannot read: {error}", yaml_path) from None
    raw = safe_load_bounded(text, yaml_path)
    if not isinstance(raw, dict):
        raise DoctorError("expected a mapping with train, val and names keys", yaml_path)
    return raw


def safe_load_bounded(text: str, yaml_path: Path) -> Any:
    """yaml.safe_load, refusing documents whose aliases expand beyond MAX_YAML_VALUES values.

    safe_load shares aliased nodes, so a ten-level alias bomb loads in microseconds, but anything that walks the
    result (str() of a name, a copy, a dump) expands it to billions of values. The node graph is measured before
    any Python object is built, without expanding it. Raises DoctorError (one line, naming the file).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, yaml_path)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(error, "problem", None) or str(error)
        raise DoctorError(f"invalid YAML: {problem}", yaml_path, line) from None
    except RecursionError:
        raise DoctorError("invalid YAML: nested too deeply", yaml_path) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, yaml_path: Path) -> None:
    """Count the values of the document as if every alias were expanded, each shared node measured once.

    Iterative (no recursion limit), memoized by node identity (linear in the distinct nodes), and refusing
    recursive aliases (`&a [*a]`), which no data.yaml needs and which expand without end.
    """
    expanded: dict[int, int] = {}
    in_progress: set[int] = set()
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in expanded:
            continue
        children = _child_nodes(node)
        if not children_done:
            if key in in_progress:
                raise DoctorError(f"a YAML alias refers to itself (line {node.start_mark.line + 1}): "
                                  "recursive aliases are not allowed", yaml_path)
            in_progress.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            continue
        in_progress.discard(key)
        distinct += 1
        expanded[key] = 1 + sum(expanded[id(child)] for child in children)
        if expanded[key] > MAX_YAML_VALUES:
            what = ("its aliases expand to" if distinct < expanded[key] else "it holds")
            raise DoctorError(f"{what} more than {MAX_YAML_VALUES:,} values (line {node.start_mark.line + 1}): "
                              "not a data.yaml (an alias bomb?)", yaml_path)


def _child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _resolve_root(yaml_path: Path, raw: dict[str, Any]) -> Path:
    value = raw.get("path")
    if value in (None, ""):
        return yaml_path.parent
    if not isinstance(value, str):
        raise DoctorError(f"'path' must be a string, got {value!r}", yaml_path)
    root = Path(value).expanduser()
    root = root if root.is_absolute() else yaml_path.parent / root
    if not root.is_dir():
        raise DoctorError(f"dataset root '{value}' not found (resolved to {root})", yaml_path)
    return root.resolve()


def _as_list(value: Any, split: str, yaml_path: Path) -> list[str]:
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise DoctorError(f"'{split}' entries must be paths, got {entry!r}", yaml_path)
    return [entry.strip() for entry in entries]


def _resolve_source(root: Path, entry: str, split: str, yaml_path: Path) -> Path:
    """A split entry as an existing path. Roboflow's `../train/images` is retried as `train/images`."""
    candidate = Path(entry).expanduser()
    candidates = [candidate] if candidate.is_absolute() else [root / candidate]
    stripped = entry
    while stripped.startswith("../"):
        stripped = stripped[3:]
        candidates.append(root / stripped)
    for path in candidates:
        if path.exists():
            return path.resolve()
    raise DoctorError(f"{split}: '{entry}' not found (resolved to {candidates[0]})", yaml_path)


def _images_in_source(source: Path, root: Path, skipped_links: list[str]) -> list[str]:
    if source.is_dir():
        return _image_files_under(str(source), set(), skipped_links)
    if source.suffix.lower() == ".txt":
        return [str(path) for path in _images_in_list_file(source, root)]
    if is_image_file(source):
        return [str(source)]
    raise DoctorError("not an image directory, .txt image list or image file", source)


def _image_files_under(directory: str, visited: set[tuple[int, int]], skipped_links: list[str]) -> list[str]:
    """Image files under a directory, in os.walk's top-down order with sorted names, symlinks followed.

    Each real directory (st_dev, st_ino) is entered once: a link back to it is recorded in `skipped_links`
    instead. The real subdirectories of a directory are claimed before any link in it is followed, so of a
    directory and a link to it the directory itself is the one scanned.
    """
    try:
        visited.add(_directory_key(os.stat(directory)))
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=_ENTRY_NAME)
    except OSError:  # unreadable directories are skipped, as os.walk does
        return []
    found, subdirs = [], []
    for entry in entries:  # every file of the dataset, on every run: is_image_file inlined
        try:
            if entry.is_dir():
                subdirs.append((entry.path, _directory_key(entry.stat()), entry.is_symlink()))
                continue
        except OSError:
            pass  # taken as a file: listed if its name is an image's
        if entry.name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS:
            found.append(entry.path)
    claimed = {key for _, key, is_link in subdirs if not is_link and key not in visited}
    visited |= claimed
    for subdir, key, is_link in subdirs:
        if not is_link and key in claimed:
            claimed.discard(key)
        elif key in visited:
            skipped_links.append(subdir)
            continue
        visited.add(key)
        found.extend(_image_files_under(subdir, visited, skipped_links))
    return found


_ENTRY_NAME = operator.attrgetter("name")


def _directory_key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _images_in_list_file(list_file: Path, root: Path) -> list[Path]:
    """A .txt list: one image per line, relative to the root (`./x` lines also relative to the list's folder)."""
    try:
        # surrogateescape: a listed name that is not UTF-8 keeps its bytes, so the file it names is found
        lines = list_file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as error:
        raise DoctorError(f"cannot read image list: {error}", list_file) from None
    images = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#") or not is_image_file(entry):
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute():
            at_root = root / path
            beside_list = list_file.parent / path
            path = beside_list if not at_root.exists() and beside_list.exists() else at_root
        # Missing files are kept: the index reports them as unreadable images, naming the list.
        images.append(Path(os.path.normpath(path)))
    return images


def _parse_names(raw: dict[str, Any], yaml_path: Path) -> tuple[tuple[str, ...], list[Finding]]:
    problems: list[str] = []
    names_value, nc_value = raw.get("names"), raw.get("nc")
    nc: int | None = None
    if nc_value is not None:
        if isinstance(nc_value, bool) or not isinstance(nc_value, int) or nc_value < 0:
            problems.append(f"nc must be a non-negative integer, got {nc_value!r}")
        else:
            nc = nc_value

    names: list[str]
    if names_value is None:
        if nc is None:
            problems.append("no 'names': every class id is out of range until names are given")
            names = []
        else:
            problems.append(f"no 'names': using '0'..'{nc - 1}' from nc")
            names = [str(i) for i in range(nc)]
    elif isinstance(names_value, list):
        _check_names_size(list(enumerate(names_value)), yaml_path)
        names = [str(name) for name in names_value]
    elif isinstance(names_value, dict):
        _check_names_size(list(names_value.items()), yaml_path)
        names, mapping_problem = _names_from_mapping(names_value)
        if mapping_problem:
            problems.append(mapping_problem)
    else:
        problems.append(f"'names' must be a list or a mapping of id to name, got {type(names_value).__name__}")
        names = []

    if nc is not None and names_value is not None and nc != len(names):
        problems.append(f"nc is {nc} but {len(names)} names are given")
    if isinstance(names_value, list) and not names:
        problems.append("'names' is empty")
    findings = [Finding("names-mismatch", None, None, yaml_path.name, None, message) for message in problems]
    return tuple(names), findings


def _check_names_size(entries: list[tuple[Any, Any]], yaml_path: Path) -> None:
    """Refuse more than MAX_NAMES classes and names that are not short text, before str() is called on them:
    str() of a nested list can be any size, and a class table of a million rows is not a dataset's."""
    if len(entries) > MAX_NAMES:
        raise DoctorError(f"'names' has {len(entries):,} classes; at most {MAX_NAMES:,} are supported", yaml_path)
    for position, name in entries:  # (list position or mapping key, name)
        if isinstance(name, (list, dict)):
            raise DoctorError(f"'names' entry {position} is a {type(name).__name__}, not a class name", yaml_path)
        if len(str(name)) > MAX_NAME_CHARS:  # a scalar: str() is at most a few times its bytes in the file
            raise DoctorError(f"'names' entry {position} is {len(str(name)):,} characters long; at most "
                              f"{MAX_NAME_CHARS} are allowed", yaml_path)


def _names_from_mapping(mapping: dict[Any, Any]) -> tuple[list[str], str | None]:
    ids: dict[int, str] = {}
    for key, name in mapping.items():
        try:
            class_id = int(key)
        except (TypeError, ValueError, OverflowError):
            return [], f"names mapping keys must be class ids, got {key!r}"
        if class_id >= MAX_NAMES:  # the ids up to it become a list: {1000000000: cat} would be a billion names
            return [], f"names mapping has class id {class_id}; at most {MAX_NAMES:,} classes are supported"
        if isinstance(key, float) and key != class_id:
            return [], f"names mapping keys must be class ids, got {key!r}"
        ids[class_id] = str(name)
    if not ids:
        return [], "'names' is empty"
    if min(ids) < 0:
        return [], f"names mapping has a negative id {min(ids)}"
    size = max(ids) + 1
    names = [ids.get(i, str(i)) for i in range(size)]
    gaps = [i for i in range(size) if i not in ids]
    problem = None
    if gaps:
        shown = ", ".join(str(g) for g in gaps[:10])
        problem = f"names mapping has gaps: ids {shown} are missing (ids must be 0..nc-1)"
    return names, problem

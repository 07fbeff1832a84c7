"""Writing the rebalanced dataset: originals linked, planned copies augmented in parallel, all written atomically.

Output layout (DIR):
    images/train/...   the usable original train images (symlink, hardlink or copy) and the new images
    labels/train/...   their labels: originals linked as they are, or rewritten without their error lines
    data.yaml          path: DIR, absolute (Ultralytics resolves a relative `path` against its own datasets
                       folder); train: images/train; val (and test) point at the original data, unchanged
    manifest.csv       one row per train image: file, source, transform, seed, instances; then one row per
                       pasted instance (--method paste|auto): host file, source image, source_line (its line
                       there), line (its line in the host's new label file)
    rebalance.json     before / after counts of the plan (as written) and of both baselines
Everything is written into a temporary sibling of DIR and renamed into place at the end, so an interrupted run
leaves no half-written dataset. The source dataset is only ever read.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from dataset_doctor.atomic import check_output_folder, csv_text, staged_directory
from dataset_doctor.dataset.datayaml import DatasetConfig, files_read, folders_read, label_path_for, list_split_images
from dataset_doctor.dataset.file_scan import available_cores
from dataset_doctor.errors import DoctorError
from dataset_doctor.progress import counting_progress
from dataset_doctor.rebalance.paste import PasteOptions
from dataset_doctor.rebalance.paste_plan import MAX_PASTES_PER_HOST, PasteJob, assign_pastes
from dataset_doctor.rebalance.sources import TrainSources

if TYPE_CHECKING:
    from dataset_doctor.rebalance.paste_write import PastedHost, PasteRecord

LINK_MODES = ("symlink", "hardlink", "copy")
JPEG_QUALITY = 95
MANIFEST_COLUMNS = ["file", "source", "transform", "seed", "instances", "source_line", "line"]
_JOBS_PER_TASK = 4  # source images handed to a worker at a time (each with all its copies)
TOP_UP_ROUNDS = 2  # extra paste rounds for classes written short of the plan (one is usually enough)


@dataclass(frozen=True)
class CopyJob:
    """All planned copies of one source image: it is decoded once and augmented `len(outputs)` times."""

    source: str  # absolute image path
    boxes: np.ndarray  # (n, 4) YOLO cx cy w h of its usable boxes
    classes: np.ndarray  # (n,)
    outputs: tuple[tuple[str, int], ...]  # (image path relative to DIR, seed) per copy


@dataclass(frozen=True)
class WrittenFile:
    """One train image of the output, as recorded in manifest.csv."""

    file: str  # relative to DIR
    source: str  # absolute path of the source image
    transform: str
    seed: int | None
    classes: np.ndarray  # the classes of the boxes written with it
    source_line: int | None = None  # pasted instances: the instance's line in the source label file
    line: int | None = None  # pasted instances: its line in the host's new label file


@dataclass(frozen=True)
class WriteResult:
    out_dir: Path
    files: list[WrittenFile]
    instances: np.ndarray  # per class, counted from what was written
    added_images: int
    lost_boxes: int  # boxes of copied images that augmentation cut off (below min visibility)
    pasted: int = 0  # instances pasted (rows of manifest.csv with a source_line)
    hidden_boxes: int = 0  # host boxes that pastes hid beyond the visibility threshold and dropped


def check_output_dir(out_dir: str | Path, config: DatasetConfig, force: bool = False) -> Path:
    """The resolved output directory, or a DoctorError saying why writing there is refused (atomic.py: inside or
    around the source; non-empty without --force; with it, not an earlier output of ours or holding a source file).
    """
    out = Path(out_dir).expanduser().resolve()
    return check_output_folder(out, force=force, source_folders=folders_read(config),
                               source_files=lambda: files_read(config))


def copy_seed(seed: int, source: str, copy_number: int) -> int:
    """The seed of one new image: from the run seed, the source file and the copy number, never the worker."""
    digest = hashlib.blake2b(f"{seed}\0{source}\0{copy_number}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF


def output_names(sources: TrainSources, copies: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """Paths (relative to DIR) of the originals, and of each original's copies: `<stem>_rb<k>.jpg` beside it.

    Originals keep their path below the deepest folder all train images share, so names stay unique.
    """
    paths = [Path(p) for p in sources.images["path"]]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    originals = [(Path("images/train") / p.relative_to(common)).as_posix() for p in paths]
    taken = set(originals)
    copy_names: list[list[str]] = []
    for original, count in zip(originals, copies):
        stem = original.rsplit(".", 1)[0]
        names = []
        for copy_number in range(1, int(count) + 1):
            name, suffix = f"{stem}_rb{copy_number}.jpg", 0
            while name in taken:  # an original may already be called like that
                suffix += 1
                name = f"{stem}_rb{copy_number}_{suffix}.jpg"
            taken.add(name)
            names.append(name)
        copy_names.append(names)
    return originals, copy_names


def write_rebalanced_dataset(sources: TrainSources, copies: np.ndarray, out_dir: str | Path, *, seed: int = 0,
                             link: str = "symlink", flip: bool = True, force: bool = False,
                             workers: int | None = None, progress: bool = True,
                             extra_files: dict[str, Callable[[WriteResult], bytes]] | None = None,
                             pastes: Sequence[PasteJob] = (), paste_options: PasteOptions | None = None,
                             paste_goals: np.ndarray | None = None, max_pastes: int = MAX_PASTES_PER_HOST,
                             ) -> WriteResult:
    """Write the rebalanced dataset to `out_dir` and return what was written.

    `copies[i]` is the number of new images made from `sources.images` row i; `flip` allows horizontal flips in
    their augmentation. `extra_files` maps a file name in DIR to a function of the result giving its bytes
    (rebalance.json is written that way by the caller). `pastes` (paste_plan.assign_pastes) are applied to
    the output's originals after the copies are made (copies always show the unpasted original).

    `paste_goals` (per class) are the train instances the plan promised: a class that ends short of its goal
    (host boxes hidden by later pastes are dropped, copies' crops cut boxes off) gets that many more pastes, in
    up to TOP_UP_ROUNDS more rounds, so the counts written meet the plan.
    """
    if link not in LINK_MODES:
        raise DoctorError(f"unknown link mode {link!r}: choose one of {', '.join(LINK_MODES)}")
    copies = np.asarray(copies, dtype=np.int64)
    if len(copies) != len(sources.images):
        raise ValueError("one copy count per source image is needed")
    out = check_output_dir(out_dir, sources.config, force)
    with staged_directory(out, "rebalance") as staging:
        originals, copy_names = output_names(sources, copies)
        files = _write_originals(sources, originals, staging, link)
        jobs = _copy_jobs(sources, copy_names, seed)
        new_files, lost = _write_copies(jobs, staging, flip, workers, progress)
        paste_rows: list[WrittenFile] = []
        hidden = 0
        if pastes:
            files, paste_rows, hidden = _apply_pastes(
                sources, originals, staging, files, new_files, pastes, paste_options or PasteOptions(flip=flip),
                paste_goals, max_pastes, seed)
        # Each original followed by its copies, whatever order the workers finished in.
        rank = {name: (position, 0) for position, name in enumerate(originals)}
        rank.update({name: (position, number) for position, names in enumerate(copy_names)
                     for number, name in enumerate(names, start=1)})
        files = sorted(files + new_files, key=lambda written: rank[written.file])
        instances = _instance_counts(files, len(sources.names))
        result = WriteResult(out, files, instances, len(new_files), lost, len(paste_rows), hidden)
        _write_text(staging / "manifest.csv", _manifest_csv(files + paste_rows))
        _write_text(staging / "data.yaml", _data_yaml(sources.config, out, staging))
        for name, make in (extra_files or {}).items():
            (staging / name).write_bytes(make(result))
    return result


def _apply_pastes(sources: TrainSources, originals: list[str], staging: Path, files: list[WrittenFile],
                  copies: list[WrittenFile], pastes: Sequence[PasteJob], options: PasteOptions,
                  goals: np.ndarray | None, max_pastes: int, seed: int,
                  ) -> tuple[list[WrittenFile], list[WrittenFile], int]:
    """Write the pastes into their hosts, topping up classes written short of `goals`; returns the originals
    with pasted hosts updated, one manifest row per paste, and how many host boxes pastes hid."""
    from dataset_doctor.rebalance.paste_write import write_pastes  # paste_write imports this module

    host_of: dict[str, PastedHost] = {}
    records_of: dict[str, list[PasteRecord]] = {}
    all_jobs, round_jobs = list(pastes), list(pastes)
    for top_up in range(TOP_UP_ROUNDS + 1):
        hosts, records = write_pastes(sources, originals, staging, round_jobs, options)
        host_of.update({host.file: host for host in hosts})
        records_of.update({host.file: [] for host in hosts})  # a rewritten host's records replace its old ones
        for record in records:
            records_of[record.host_file].append(record)
        if goals is None or top_up == TOP_UP_ROUNDS:
            break
        written = _instance_counts(_with_pastes(files, host_of) + copies, len(sources.names))
        short = np.maximum(np.asarray(goals, dtype=np.int64) - written, 0)
        if not short.any():
            break
        # More pastes for the classes written short, dealt like the first ones; a host that gets one is rewritten
        # from its original with all its jobs (the same seeds repeat the earlier pastes).
        load = np.bincount([job.host for job in all_jobs], minlength=len(sources.images))
        extra = assign_pastes(sources.boxes, len(sources.images), short, copy_seed(seed, "top-up", top_up),
                              max_pastes, pasted_before=load)
        if not extra:
            break
        all_jobs += extra
        touched = {job.host for job in extra}
        round_jobs = [job for job in all_jobs if job.host in touched]
    rows = [WrittenFile(r.host_file, r.source, r.transform, r.seed, np.zeros(r.carried, np.int64), r.source_line,
                        r.line)
            for file in sorted(records_of, key=lambda f: host_of[f].position) for r in records_of[file]]
    return _with_pastes(files, host_of), rows, sum(host.dropped for host in host_of.values())


def _with_pastes(files: list[WrittenFile], host_of: dict[str, PastedHost]) -> list[WrittenFile]:
    """The originals, each pasted host with its new classes."""
    return [WrittenFile(f.file, f.source, f"{f.transform} + pasted", None, host_of[f.file].classes)
            if f.file in host_of else f for f in files]


def _instance_counts(files: list[WrittenFile], num_classes: int) -> np.ndarray:
    """Instances per class in the label files written."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for written in files:
        counts += np.bincount(written.classes, minlength=num_classes)[:num_classes]
    return counts


def _write_originals(sources: TrainSources, originals: list[str], staging: Path, link: str) -> list[WrittenFile]:
    classes_of = sources.boxes.groupby("position")["cls"].apply(lambda c: c.to_numpy())
    usable_lines = sources.boxes.groupby("position")["line"].apply(set)
    files = []
    for position, row in enumerate(sources.images.itertuples(index=False)):
        image_out = staging / originals[position]
        image_out.parent.mkdir(parents=True, exist_ok=True)
        _link(Path(row.path), image_out, link)
        label_out = label_path_for(image_out)
        # `a.jpg` and `a.png` share `a.txt`, in the source as here: the label is written once.
        if row.label_exists and not label_out.is_file():
            label_out.parent.mkdir(parents=True, exist_ok=True)
            if row.clean_label:
                _link(Path(row.label_path), label_out, link)
            else:
                label_out.write_bytes(_without_bad_lines(Path(row.label_path), usable_lines.get(position, set())))
        classes = classes_of.get(position, np.zeros(0, dtype=np.int64))
        files.append(WrittenFile(originals[position], row.path, f"original ({link})", None, classes))
    return files


def _link(source: Path, target: Path, link: str) -> None:
    try:
        if link == "symlink":
            os.symlink(source, target)
        elif link == "hardlink":
            os.link(source, target)
        else:
            shutil.copyfile(source, target)
    except OSError as error:
        hint = " (hard links cannot cross filesystems: use --link symlink or copy)" if link == "hardlink" else ""
        raise DoctorError(f"cannot {link} into {target.parent}: {error.strerror or error}{hint}", source) from None


def _without_bad_lines(label_path: Path, usable_lines: set[int]) -> bytes:
    """The label file keeping only its usable lines (1-based numbers, as the index counts them), as they were."""
    lines = label_path.read_bytes().split(b"\n")
    kept = [lines[number - 1].rstrip(b"\r") for number in sorted(usable_lines) if 0 < number <= len(lines)]
    return b"".join(line + b"\n" for line in kept)


def _copy_jobs(sources: TrainSources, copy_names: list[list[str]], seed: int) -> list[CopyJob]:
    jobs = []
    by_position = dict(list(sources.boxes.groupby("position")))
    for position, names in enumerate(copy_names):
        if not names:
            continue
        boxes = by_position.get(position)
        source = sources.images.at[position, "path"]
        relative = sources.images.at[position, "image"]
        outputs = tuple((name, copy_seed(seed, relative, number)) for number, name in enumerate(names, start=1))
        jobs.append(CopyJob(
            source=source,
            boxes=boxes[["cx", "cy", "w", "h"]].to_numpy(np.float64) if boxes is not None else np.zeros((0, 4)),
            classes=boxes["cls"].to_numpy(np.int64) if boxes is not None else np.zeros(0, dtype=np.int64),
            outputs=outputs,
        ))
    return jobs


def _write_copies(jobs: list[CopyJob], staging: Path, flip: bool, workers: int | None,
                  progress: bool) -> tuple[list[WrittenFile], int]:
    total = sum(len(job.outputs) for job in jobs)
    workers = max(1, min(workers or available_cores(), len(jobs) or 1))
    tasks = [(str(staging), flip, jobs[i:i + _JOBS_PER_TASK]) for i in range(0, len(jobs), _JOBS_PER_TASK)]
    results: list[WrittenFile] = []
    lost = 0
    if workers == 1:
        with counting_progress(total, progress, "augmenting", "new images") as advance:
            for task in tasks:
                written, task_lost = _run_task(task)
                results += written
                lost += task_lost
                advance(len(written))
        return results, lost
    # fork: the fastest start; the pool exists before the progress bar starts its refresh thread.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method)) as pool:
        pending = pool.map(_run_task, tasks)
        with counting_progress(total, progress, "augmenting", "new images") as advance:
            for written, task_lost in pending:
                results += written
                lost += task_lost
                advance(len(written))
    return results, lost


_PIPELINES: dict[bool, object] = {}  # per worker process, by `flip`, built on first use


def _run_task(task: tuple[str, bool, list[CopyJob]]) -> tuple[list[WrittenFile], int]:
    """Make every copy of a few source images (runs in a worker process)."""
    import cv2

    from dataset_doctor.dataset.images import read_image_file
    from dataset_doctor.rebalance.augment import augment_copy, build_pipeline

    staging, flip, jobs = task
    if flip not in _PIPELINES:
        cv2.setNumThreads(1)  # one image per process: OpenCV's own threads would only contend with the workers
        _PIPELINES[flip] = build_pipeline(flip)
    pipeline = _PIPELINES[flip]
    written: list[WrittenFile] = []
    lost = 0
    for job in jobs:
        pixels = read_image_file(job.source)
        if pixels is None:
            raise undecodable(job.source)
        for relative, seed in job.outputs:
            copy = augment_copy(pipeline, pixels, job.boxes, job.classes, seed)
            image_path = Path(staging) / relative
            image_path.parent.mkdir(parents=True, exist_ok=True)
            ok, encoded = cv2.imencode(".jpg", copy.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise DoctorError("could not encode an augmented copy as JPEG", job.source)
            image_path.write_bytes(encoded.tobytes())
            label_path = label_path_for(image_path)
            label_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.write_text("".join(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
                                          for cls, (cx, cy, w, h) in zip(copy.classes, copy.boxes)))
            written.append(WrittenFile(relative, job.source, copy.transform, seed, copy.classes))
            lost += len(job.classes) - len(copy.classes)
    return written, lost


def undecodable(source: str) -> DoctorError:
    """Why a train image that the index could read cannot be decoded now: too large to decode whole, or changed."""
    from dataset_doctor.dataset.images import DEFAULT_MAX_PIXELS, image_header_size

    size = image_header_size(source)
    if size is not None and size[0] * size[1] > DEFAULT_MAX_PIXELS:  # a PNG cannot be decoded reduced
        return DoctorError(f"{size[0]}x{size[1]} pixels is above the budget of {DEFAULT_MAX_PIXELS / 1e6:g} "
                           "megapixels and cannot be decoded at a reduced size, so it cannot be augmented: "
                           "shrink it or leave it out of train (doctor audit: huge-image)", source)
    # it decoded when the index was built: it changed since
    return DoctorError("image can no longer be decoded (did it change during the run?)", source)


def _manifest_csv(files: list[WrittenFile]) -> str:
    return csv_text(MANIFEST_COLUMNS, ([written.file, written.source, written.transform,
                                        "" if written.seed is None else written.seed, len(written.classes),
                                        "" if written.source_line is None else written.source_line,
                                        "" if written.line is None else written.line]
                                       for written in files))


def _data_yaml(config: DatasetConfig, out: Path, staging: Path) -> str:
    """The new data.yaml: train here, the other splits pointing at the original files.

    Directories are referenced by absolute path. A `.txt` image list is rewritten as a list of absolute image
    paths beside the new data.yaml, because list entries are relative to the dataset root, which changed.
    """
    raw = {key: value for key, value in config.raw.items() if key not in ("path", "train", "val", "test", "nc",
                                                                          "names")}
    document: dict = {"path": str(out), "train": "images/train"}
    for split, split_sources in config.splits.items():
        if split == "train":
            continue
        if all(source.is_dir() for source in split_sources):
            paths = [str(source) for source in split_sources]
            document[split] = paths[0] if len(paths) == 1 else paths
        else:
            list_name = f"{split}.txt"
            images = list_split_images(config, split)
            # An image list names files: each name keeps its original bytes (surrogateescape), not its display form.
            listing = "".join(f"{image}\n" for image in images)
            (staging / list_name).write_bytes(listing.encode("utf-8", "surrogateescape"))
            document[split] = list_name
    document["nc"] = config.nc
    document["names"] = list(config.names)
    document.update(raw)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _write_text(path: Path, text: str) -> None:
    """Text for people and programs: names that are not UTF-8 as backslash escapes (images.display_name)."""
    path.write_bytes(text.encode("utf-8", "backslashreplace"))



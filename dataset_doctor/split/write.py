"""Laying out a split plan as a YOLO dataset: images/<split>/, labels/<split>/ and a data.yaml.

Files keep their names. Sources from several folders can share a name (train/0001.jpg and val/0001.jpg, or
0001.jpg and 0001.png, which would share 0001.txt); within one output every stem must be unique, so the
first of a clash in source-path order keeps its name and the others get a short hash of their source path,
which depends on nothing but the source: the same dataset always gets the same names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from dataset_doctor.split.output import copy_label, place_image
from dataset_doctor.split.plan import SplitPlan


@dataclass
class WrittenFiles:
    """What writing did: the output path of each plan row ('' where nothing could be written)."""

    outputs: list[str]  # relative to the new dataset root, per plan row
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (source image, output image)
    not_found: list[str] = field(default_factory=list)  # images whose file vanished since the scan
    labels_written: int = 0
    link_fallbacks: int = 0  # hardlinks that became copies (another filesystem, or no hardlink support)


def output_file_names(sources: list[str], paths: list[str]) -> list[str]:
    """A unique file name per image (unique stems, case-insensitively: labels are <stem>.txt)."""
    names = [os.path.basename(path) for path in paths]
    frame = pd.DataFrame({"name": names, "source": sources,
                          "key": [os.path.splitext(name)[0].lower() for name in names]})
    clashing = frame["key"].duplicated(keep=False).to_numpy()
    taken = set(frame["key"])  # every original stem, so a generated name never takes one
    result = list(names)
    for _, group in frame[clashing].groupby("key", sort=True):
        rows = group.sort_values("source", kind="stable").index.tolist()
        for row in rows[1:]:
            stem, extension = os.path.splitext(names[row])
            digest = hashlib.sha1(sources[row].encode("utf-8", "surrogateescape")).hexdigest()
            for length in (8, 16, 40):
                candidate = f"{stem}_{digest[:length]}"
                if candidate.lower() not in taken:
                    break
            else:
                raise RuntimeError(f"no unique name for {sources[row]}")
            taken.add(candidate.lower())
            result[row] = candidate + extension
    return result


def write_split_files(plan: SplitPlan, root: Path, link: str, progress: bool = False) -> WrittenFiles:
    """Copy or link every image and copy every label into `root` (an empty directory)."""
    images = plan.images
    sources, paths = images["image"].tolist(), images["path"].tolist()
    names = output_file_names(sources, paths)
    for split in plan.split_names:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)

    written = WrittenFiles(outputs=[""] * len(images))
    rows = zip(sources, paths, images["label_path"].tolist(), images["split"].tolist(), names)
    with _progress(len(images), progress) as advance:
        for row, (source, path, label_path, split, name) in enumerate(rows):
            advance()
            if not os.path.isfile(path):
                written.not_found.append(source)
                continue
            relative = f"images/{split}/{name}"
            used = place_image(path, root / relative, link)
            written.link_fallbacks += used != link
            written.outputs[row] = relative
            if name != os.path.basename(path):
                written.renamed.append((source, relative))
            if os.path.isfile(label_path):
                copy_label(label_path, root / "labels" / split / (os.path.splitext(name)[0] + ".txt"))
                written.labels_written += 1
    return written


def write_data_yaml(plan: SplitPlan, root: Path, source: str) -> Path:
    """The new data.yaml: split folders relative to itself (no `path`, so the folder can move), names kept."""
    ratios = ",".join(f"{value:g}" for value in plan.ratios.values())
    header = (f"# written by `doctor split` from {source} (ratios {ratios}, seed {plan.seed});\n"
              "# per-class instances per split are in split.json\n")
    content: dict[str, object] = {split: f"images/{split}" for split in plan.split_names}
    content["nc"] = plan.index.nc
    content["names"] = list(plan.index.names)
    path = root / "data.yaml"
    path.write_text(header + yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    columns = (TextColumn("writing"), BarColumn(), MofNCompleteColumn(), TextColumn("images"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("write", total=total)
        yield lambda: bar.advance(task)

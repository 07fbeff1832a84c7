"""The classification sample: long-tailed folder-per-class data whose planted defects the audit finds, one by one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dataset_doctor.audit.classify import run_classify_audit
from dataset_doctor.dataset.classify_index import build_classify_index, detect_task
from dataset_doctor.sample.classify import ClassifySampleSpec, write_classify_sample
from dataset_doctor.sample.spec import CLASS_NAMES


def test_layout_and_long_tail(classify_sample_root: Path) -> None:
    assert detect_task(classify_sample_root)[0] == "classify"
    index = build_classify_index(classify_sample_root)
    assert index.names == tuple(sorted(CLASS_NAMES))
    spec = ClassifySampleSpec()
    expected = dict(zip(CLASS_NAMES, spec.train_counts()))
    train = dict(zip(index.names, index.counts("train").tolist()))
    # planted extras: zero +1 duplicate, two +1 nested, four +1 tiny, five +2 gray, six +1 rgba (one's cut JPEG
    # is unreadable)
    extras = {"zero": 1, "two": 1, "four": 1, "five": 2, "six": 1}
    assert train == {name: expected[name] + extras.get(name, 0) for name in CLASS_NAMES}
    assert max(expected.values()) / min(expected.values()) >= 10
    val = dict(zip(index.names, index.counts("val").tolist()))
    assert val["nine"] == 0 and val["three"] == spec.val_per_class + 1  # + the leak


def test_audit_finds_every_planted_defect(classify_sample_root: Path) -> None:
    manifest = json.loads((classify_sample_root / "manifest.json").read_text())
    result = run_classify_audit(build_classify_index(classify_sample_root))
    found = {(row.check, row.image) for row in result.findings.itertuples()}
    for defect in manifest["defects"]:
        if defect["image"] is None:
            assert defect["check"] in set(result.findings["check"]), defect
        else:
            assert (defect["check"], defect["image"]) in found, defect
    # and nothing else at image level: every image finding is a planted defect
    planted = {(d["check"], d["image"]) for d in manifest["defects"] if d["image"] is not None}
    image_findings = {item for item in found if item[1] is not None}
    assert image_findings == planted


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def digest(root: Path) -> str:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return hashlib.sha256(b"".join(str(p.relative_to(root)).encode() + p.read_bytes() for p in files)).hexdigest()

    spec = ClassifySampleSpec(max_train=8, min_train=2, val_per_class=2)
    first = write_classify_sample(tmp_path / "a", seed=3, spec=spec)
    second = write_classify_sample(tmp_path / "b", seed=3, spec=spec)
    other = write_classify_sample(tmp_path / "c", seed=4, spec=spec)
    assert digest(first) == digest(second) != digest(other)


def test_the_digit_sits_near_the_centre_where_the_evaluation_crop_keeps_it(tmp_path: Path) -> None:
    """A classifier's input is a crop around its subject: evaluation's centre crop (the short side's square)
    must keep the digit, so the sample draws it off the centre by at most half the free room either way."""
    import numpy as np

    from dataset_doctor.sample.generate import _SampleWriter
    from dataset_doctor.sample.spec import SampleSpec

    writer = _SampleWriter(tmp_path, 3, SampleSpec(min_object_px=40, max_object_px=90))
    offsets = []
    for trial in range(60):
        width, height = (64, 96) if trial % 2 else (96, 64)
        box = writer._paste_digit(writer._background(width, height), trial % 10, [], shrink=1.0, max_share=0.9,
                                  centre_jitter=0.5)
        assert box is not None
        x1, y1, x2, y2 = box
        short = min(width, height)
        left, top = (width - short) / 2, (height - short) / 2  # the centre square evaluation keeps
        assert x1 >= left - 0.15 * short and x2 <= left + 1.15 * short, (box, width, height)
        assert y1 >= top - 0.15 * short and y2 <= top + 1.15 * short, (box, width, height)
        offsets.append(((x1 + x2) / 2 - width / 2) / width)
    assert np.std(offsets) > 0.01  # jittered, not pinned to the centre

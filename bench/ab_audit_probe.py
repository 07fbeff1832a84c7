"""Where the cold audit's per-image time goes (issue 22): content hash vs the whole probe, PNG decodes, and
each stage of the probe per format.

    PYTHONPATH=. nice -n 10 python bench/ab_audit_probe.py sample/images/train --images 150 --repeats 5
    PYTHONPATH=. python bench/ab_audit_probe.py REPLICA/images/train --images 800 --repeats 3 --stages-only

Part 1 times SHA-256 (what the index uses), blake2b and `probe_image_bytes` (read is excluded: bytes are in
memory) per image. Part 2 compares, on the PNGs, OpenCV's reduced grey decode (what the probe asks for) with a
full grey decode followed by the resize OpenCV applies itself, and checks the pixels are identical. Part 3
splits the probe into its stages per format (read, SHA-256, header and end-marker checks, the decode at the
probe's own reduction with its warning capture, the perceptual hash, the image's label file read and parsed),
and times JPEGs decoded one reduction smaller than the hash needs, the saving a smaller hash decode would give.
Medians of --repeats passes, one thread; prints plain lines.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.dataset import images as probe
from dataset_doctor.dataset.datayaml import label_path_text
from dataset_doctor.dataset.images import probe_image_bytes
from dataset_doctor.dataset.labels import read_label_file_with_digest

REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4}


def per_image(function, items, repeats: int) -> float:
    """Median over passes of the ms per item."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            function(item)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / max(len(items), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of images (e.g. sample/images/train)")
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stages-only", action="store_true", help="only part 3")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:args.images]
    if args.stages_only:
        stages(files, args.repeats)
        return
    datas = [p.read_bytes() for p in files]
    pngs = [np.frombuffer(d, np.uint8) for p, d in zip(files, datas) if p.suffix.lower() == ".png"]
    print(f"{len(datas)} images ({len(pngs)} PNG), mean {sum(map(len, datas)) / len(datas) / 1024:.0f} KiB")
    print(f"sha256 {per_image(lambda d: hashlib.sha256(d).hexdigest(), datas, args.repeats):.2f} ms/image")
    print(f"blake2b-128 {per_image(lambda d: hashlib.blake2b(d, digest_size=16).hexdigest(), datas, args.repeats):.2f}"
          " ms/image")
    print(f"probe_image_bytes {per_image(probe_image_bytes, datas, args.repeats):.2f} ms/image")
    for factor, flag in REDUCED.items():
        def full_then_resize(buffer: np.ndarray, factor: int = factor) -> np.ndarray:
            gray = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
            return cv2.resize(gray, (gray.shape[1] // factor, gray.shape[0] // factor),
                              interpolation=cv2.INTER_LINEAR_EXACT)
        reduced_ms = per_image(lambda b, flag=flag: cv2.imdecode(b, flag), pngs, args.repeats)
        full_ms = per_image(full_then_resize, pngs, args.repeats)
        same = sum(np.array_equal(cv2.imdecode(b, flag), full_then_resize(b)) for b in pngs)
        print(f"PNG 1/{factor}: reduced decode {reduced_ms:.1f} ms, full decode + resize {full_ms:.1f} ms, "
              f"identical {same}/{len(pngs)}")

    stages(files, args.repeats)


def stages(files: list[Path], repeats: int) -> None:
    """Part 3: ms per image of each probe stage, per format, and the total per image over the mix."""
    by_format: dict[str, list[tuple[Path, bytes]]] = {}
    for path in files:
        data = path.read_bytes()
        by_format.setdefault(probe.sniff_format(data), []).append((path, data))
    mix = 0.0
    for image_format, items in sorted(by_format.items()):
        datas = [data for _, data in items]
        flags = [probe._REDUCED_FLAGS[probe._reduction_for(probe._header_size(d, image_format))] for d in datas]
        buffers = [np.frombuffer(d, np.uint8) for d in datas]
        grays = [cv2.imdecode(b, f) for b, f in zip(buffers, flags)]
        smaller = {cv2.IMREAD_GRAYSCALE: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                   cv2.IMREAD_REDUCED_GRAYSCALE_2: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                   cv2.IMREAD_REDUCED_GRAYSCALE_4: cv2.IMREAD_REDUCED_GRAYSCALE_8}
        row = {
            "read": per_image(lambda p: p.read_bytes(), [p for p, _ in items], repeats),
            "sha256": per_image(lambda d: hashlib.sha256(d).hexdigest(), datas, repeats),
            "header+end": per_image(lambda d, kind=image_format: probe._truncation(d, kind)
                                    or probe._header_size(d, kind), datas, repeats),
            "decode": per_image(lambda bf: probe._decoder_messages.decode(*bf), list(zip(buffers, flags)), repeats),
            "phash": per_image(probe.perceptual_hash, grays, repeats),
            "label": per_image(lambda p: read_label_file_with_digest(label_path_text(str(p))),
                               [p for p, _ in items], repeats),
        }
        total = sum(row.values())
        mix += total * len(items) / len(files)
        line = ", ".join(f"{name} {ms:.3f}" for name, ms in row.items())
        print(f"{image_format} ({len(items)}): {line}; sum {total:.3f} ms/image")
        if image_format == "jpeg":
            one_smaller = [smaller.get(f, f) for f in flags]
            ms = per_image(lambda bf: cv2.imdecode(*bf), list(zip(buffers, one_smaller)), repeats)
            print(f"jpeg decoded one reduction smaller than the hash needs: {ms:.3f} ms/image")
    print(f"mix of these {len(files)} files: {mix:.3f} ms/image on one core")


if __name__ == "__main__":
    main()

"""Where the cold audit's per-image time goes (issue 22): content hash vs the whole probe, and PNG decodes.

    PYTHONPATH=. nice -n 10 python bench/ab_audit_probe.py sample/images/train --images 150 --repeats 5

Part 1 times SHA-256 (what the index uses), blake2b and `probe_image_bytes` (read is excluded: bytes are in
memory) per image. Part 2 compares, on the PNGs, OpenCV's reduced grey decode (what the probe asks for) with a
full grey decode followed by the resize OpenCV applies itself, and checks the pixels are identical. Medians of
--repeats passes, one thread; prints plain lines.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.dataset.images import probe_image_bytes

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
    args = parser.parse_args()
    cv2.setNumThreads(1)
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:args.images]
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


if __name__ == "__main__":
    main()

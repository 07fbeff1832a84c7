"""Where a warm `doctor audit` spends its time (issue 22): each stage of a warm index build, then each audit check.

    DOCTOR_CACHE_DIR=/tmp/ab/cache PYTHONPATH=. python bench/ab_warm_index.py /tmp/ab/replica-10000/data.yaml

One process: the cache is filled first, then the stages run --repeats times in the order build_index runs them
(they call the index's own internal steps, so the split is that of the real code) and every audit check
function `run_audit` calls is timed in place. Medians in ms; prints plain lines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import sklearn.preprocessing  # noqa: F401  (imported lazily by the weights on first use: not audit work)
import sklearn.utils.class_weight  # noqa: F401

from dataset_doctor.audit import runner
from dataset_doctor.audit.result_cache import audit_with_cache
from dataset_doctor.dataset import file_scan
from dataset_doctor.dataset import index as index_module
from dataset_doctor.dataset.datayaml import list_split_image_files, load_data_yaml
from dataset_doctor.dataset.index_cache import cache_file_for, load_scan
from dataset_doctor.gc_pause import gc_paused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a data.yaml")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    index_module.build_index(args.data, progress=False)  # fill the cache
    times: dict[str, list[float]] = {}

    def timed(name, function):
        started = time.perf_counter()
        result = function()
        times.setdefault(name, []).append(time.perf_counter() - started)
        return result

    _time_audit_checks(times)
    for _ in range(args.repeats):
        with gc_paused():
            _one_pass(args.data, timed, times)
    for name, values in times.items():
        print(f"{name:36s} {1000 * statistics.median(values):7.1f} ms")


def _one_pass(data: Path, timed, times: dict[str, list[float]]) -> None:
    """One warm build, stage by stage as build_index runs them, then the audit."""
    started = time.perf_counter()
    config = timed("index: data.yaml", lambda: load_data_yaml(data))
    listing = timed("index: listing", lambda: [(split, path) for split in config.splits
                                               for path in list_split_image_files(config, split, [])])
    previous = timed("index: cache load", lambda: load_scan(cache_file_for(config.yaml_path)))
    paths = [path for _, path in listing]
    pairs = timed("index: label paths", lambda: index_module._image_label_pairs(paths, previous))
    scan, _ = timed("index: stat + label check", lambda: file_scan.scan_files(pairs, previous))
    index = timed("index: tables", lambda: index_module._assemble(config, listing, pairs, scan, 0))
    if scan.digest is not None:
        index.fingerprint = timed("index: fingerprint", lambda: index_module._fingerprint(scan.digest, listing))
    times.setdefault("index total", []).append(time.perf_counter() - started)
    timed("audit total", lambda: runner.run_audit(index))
    timed("audit with cache", lambda: audit_with_cache(index))


def _time_audit_checks(times: dict[str, list[float]]) -> None:
    """Wrap every module-level function runner._run_audit calls, so each check is timed where it runs."""
    skip = {"run_audit", "gc_paused", "concat_findings"}
    for name in dir(runner):
        function = getattr(runner, name)
        if name.startswith("_") or name in skip or not hasattr(function, "__code__"):
            continue

        def wrapped(*positional, _function=function, _name=name, **keywords):
            started = time.perf_counter()
            result = _function(*positional, **keywords)
            times.setdefault(f"audit: {_name}", []).append(time.perf_counter() - started)
            return result

        setattr(runner, name, wrapped)


if __name__ == "__main__":
    main()

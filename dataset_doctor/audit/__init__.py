"""`doctor audit`: every check of design.md section 2 over a dataset index.

    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.audit import AuditOptions, run_audit
    result = run_audit(build_index("data.yaml"), AuditOptions(imgsz=1280))
    result.findings, result.class_counts, result.box_stats, result.to_json_dict()

The runner and result load lazily, so importing the light `audit.options` (as the CLI does) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataset_doctor.audit.options import AuditOptions

if TYPE_CHECKING:
    from dataset_doctor.audit.result import AuditResult
    from dataset_doctor.audit.runner import run_audit

__all__ = ["AuditOptions", "AuditResult", "run_audit"]


def __getattr__(name: str) -> Any:
    if name == "run_audit":
        from dataset_doctor.audit.runner import run_audit

        return run_audit
    if name == "AuditResult":
        from dataset_doctor.audit.result import AuditResult

        return AuditResult
    raise AttributeError(name)

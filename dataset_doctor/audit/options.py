"""Every threshold of the audit in one typed place, with the defaults of design.md section 2.

Kept free of heavy imports (the CLI builds its option defaults from it, and `doctor --help` must stay fast):
the two defaults owned by other modules are repeated here and a test keeps them equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from dataset_doctor.errors import DoctorError

FAIL_ON = ("error", "warning")
_OUT_OF_BOUNDS_TOLERANCE = 0.01  # = box_rules.OUT_OF_BOUNDS_TOLERANCE
_NEAR_DUPLICATE_MAX_BITS = 16  # = near_duplicates.NEAR_DUPLICATE_MAX_BITS
_MAX_PIXELS = 50_000_000  # = images.DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class AuditOptions:
    """What the audit calls a problem. The CLI fills it; AuditResult records it."""

    imgsz: int = 640  # training size: images are letterboxed so their long side is this many pixels
    tiny_box_px: float = 2.0  # tiny-box: a side shorter than this many pixels at imgsz
    out_of_bounds_tolerance: float = _OUT_OF_BOUNDS_TOLERANCE  # overhang (fraction of the image side) still allowed
    duplicate_box_iou: float = 0.9  # duplicate-box: same class and at least this IoU within one file
    max_aspect: float = 20.0  # extreme-aspect: width/height above this or below its inverse (in pixels)
    imbalance_ratio: float = 10.0  # class-imbalance: most / least frequent train class above this
    min_instances: int = 100  # few-instances: fewer train instances than this (but at least one)
    near_duplicate_bits: int = _NEAR_DUPLICATE_MAX_BITS  # duplicate-image / split-leak: pHash bits that may differ
    shift_min_instances: int = 15  # scale-shift: test a class only with this many boxes in train and in val
    shift_alpha: float = 0.01  # scale-shift: family-wise significance (Bonferroni over the classes tested)
    shift_min_effect: float = 0.25  # scale-shift: smallest KS statistic (CDF gap) worth a warning
    tiny_image_px: int = 32  # tiny-image (classification): an image whose short side is under this many pixels
    max_pixels: int = _MAX_PIXELS  # huge-image: width x height above this (such images are never decoded in full)
    ignore: frozenset[str] = field(default_factory=frozenset)  # check ids left out of the result
    fail_on: str = "error"  # the lowest severity that makes the audit fail (exit code 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore", frozenset(self.ignore))
        self.validate()

    def validate(self) -> None:
        """Raise DoctorError for a setting that cannot mean anything (the CLI shows it as a usage error)."""
        from dataset_doctor.findings import CHECKS

        unknown = sorted(set(self.ignore) - set(CHECKS))
        if unknown:
            raise DoctorError(f"unknown check {', '.join(map(repr, unknown))} for --ignore; "
                              f"known checks: {', '.join(CHECKS)}")
        if self.fail_on not in FAIL_ON:
            raise DoctorError(f"--fail-on must be one of {', '.join(FAIL_ON)}, got {self.fail_on!r}")
        rules = [
            (self.imgsz >= 1, "--imgsz must be at least 1"),
            (self.tiny_box_px >= 0, "--tiny-px must not be negative"),
            (self.out_of_bounds_tolerance >= 0, "--bounds-tolerance must not be negative"),
            (0 < self.duplicate_box_iou <= 1, "--duplicate-iou must be in (0, 1]"),
            (self.max_aspect >= 1, "--max-aspect must be at least 1"),
            (self.imbalance_ratio >= 1, "--imbalance-ratio must be at least 1"),
            (self.min_instances >= 0, "--min-instances must not be negative"),
            (0 <= self.near_duplicate_bits <= 16, "--near-duplicate-bits must be in 0..16"),
            (self.shift_min_instances >= 2, "--shift-min-instances must be at least 2"),
            (0 < self.shift_alpha < 1, "--shift-alpha must be in (0, 1)"),
            (0 <= self.shift_min_effect <= 1, "--shift-min-effect must be in [0, 1]"),
            (self.tiny_image_px >= 0, "--tiny-image-px must not be negative"),
            (self.max_pixels >= 1, "--max-pixels must be at least 1"),
        ]
        for ok, message in rules:
            if not ok:
                raise DoctorError(message)

    def runs(self, check: str) -> bool:
        return check not in self.ignore

    def with_changes(self, **changes) -> AuditOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["ignore"] = sorted(self.ignore)
        return record

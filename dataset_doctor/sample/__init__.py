"""The sample generator: a small synthetic YOLO dataset with known, listed defects (generate), and the numbers it is
built from (spec)."""

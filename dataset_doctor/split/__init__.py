"""`doctor split`: stratified, leak-free train/val(/test) splits for detection datasets.

Modules, in the order data flows: `ratios` (parse --ratios), `plan` (index -> duplicate groups -> a split per
image), `stratify` (the algorithm, pure NumPy), `write` and `output` (the new dataset, safely), `summary`
(split.json and the terminal table), `pipeline` (all of it as one call).
"""

from dataset_doctor.split.pipeline import SplitResult, split_dataset
from dataset_doctor.split.plan import SplitPlan, plan_split
from dataset_doctor.split.ratios import parse_ratios
from dataset_doctor.split.stratify import iterative_stratification

__all__ = ["SplitPlan", "SplitResult", "iterative_stratification", "parse_ratios", "plan_split", "split_dataset"]

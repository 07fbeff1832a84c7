"""`doctor rebalance`: plan extra copies of train images so rare classes reach a target, then write them.

sources.py (what the train split offers) -> plan.py (how many copies, plus two baselines) -> augment.py (one
augmented copy) -> materialize.py (the output dataset) -> report.py (tables and rebalance.json).
"""

DEFAULT_MAX_COPIES = 10  # new images from one source image at most: the model should not see one picture forever

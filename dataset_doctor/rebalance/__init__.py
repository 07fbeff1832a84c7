"""`doctor rebalance`: plan extra copies of train images so rare classes reach a target, then write them.

sources.py (what the train split offers) -> plan.py (how many copies, plus two baselines) -> augment.py (one
augmented copy) -> materialize.py (the output dataset) -> report.py (tables and rebalance.json).
"""

# What the audit's and the training report's next steps suggest for rare classes, and the measurement they quote
# (bench/README.md "Imbalance levers": aquarium, n from scratch, 30 epochs at 320, means of 3 seeds)
# `doctor train --copy-paste` default (trainer.data.config.AugmentConfig): online copy-paste on top of class
# weights beat weights alone on val mAP50-95 in all six seeds (aquarium and the sample, three each)
SUGGESTED_COPY_PASTE = 0.5
COPY_PASTE_EVIDENCE = ("measured on a real 7-class set over 3 seeds: the rarest classes' val AP50 0.110 -> 0.142 "
                       "and val mAP50-95 0.037 -> 0.046 on top of class weights")
PASTE_OVER_ONLINE_EVIDENCE = ("val mAP50-95 0.406 vs 0.324 and the rarest classes' AP50 0.573 vs 0.440 over 3 "
                              "seeds, both with class weights; level on the real set")
PASTE_REBALANCE_EVIDENCE = ("measured on a real 7-class set over 3 seeds: val mAP50-95 0.037 -> 0.048 and the "
                            "rarest classes' AP50 0.110 -> 0.138 on top of class weights, with no more training steps")
# Image copies of rare classes helped there only by adding steps: class weights trained as many steps did better.
LONGER_TRAINING_FACTOR = 3  # the epochs multiple suggested instead of an image-rebalanced copy (3.2x measured)
TRAIN_LONGER_EVIDENCE = ("measured on a real 7-class set over 3 seeds: class weights trained as many steps as an "
                         "image-rebalanced copy (3.2x the epochs) beat that copy, val mAP50-95 0.092 vs 0.075 and "
                         "the rarest classes' AP50 0.173 vs 0.168")
# Instances pasted into one train image at most (--max-pastes): it should still look real. Here, not in
# paste_plan, so the CLI reads its default without importing SciPy's optimiser (half a second per command).
MAX_PASTES_PER_HOST = 5
DEFAULT_MAX_COPIES = 10  # new images from one source image at most: the model should not see one picture forever

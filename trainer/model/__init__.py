"""The model and what works on its outputs: the detector, the loss and its assigner, box geometry (the one IoU),
non-maximum suppression and inference."""

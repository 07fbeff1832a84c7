"""The built-in PyTorch YOLO trainer: data/ (the pipeline), model/ (detector, loss, NMS, inference), evaluation/,
the loop with its engine parts (setup, launch, checkpoint, ema, optim, schedule), the run directory contract
(run_dir) and the diagnosis rules. It never imports reports/: whoever starts a run writes its report."""

"""The built-in PyTorch YOLO trainer: model, loss, data pipeline, training loop and evaluation."""

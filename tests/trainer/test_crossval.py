"""trainer.crossval's resume decision per fold, on run directories written without training: done (skip),
trained (predict only), resume (continue weights/last.pt through the trainer), fresh (train again)."""

from __future__ import annotations

import shutil

from tests.trainer.runs import write_run_with_checkpoint
from trainer import run_dir as files
from trainer.crossval import DONE_MARK, TRAINED_MARK, _fold_state
from trainer.model.detector import ModelConfig

HELD = ["/data/images/train/a.jpg", "/data/images/train/b.jpg"]


def test_each_fold_resumes_from_where_it_was_killed(tmp_path):
    fold, run, predictions = tmp_path / "folds" / "fold-1", tmp_path / "runs" / "fold-1", tmp_path / "predictions"
    fold.mkdir(parents=True)
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "fresh"  # nothing yet
    run.mkdir(parents=True)
    (run / files.ARGS_FILE).write_text("train: {}\n")
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "fresh"  # killed before the first checkpoint

    write_run_with_checkpoint(run, tmp_path / "data.yaml", ModelConfig(scale="n", num_classes=2))  # after epoch 1
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "resume"
    shutil.copy(run / files.LAST_CHECKPOINT, run / files.BEST_CHECKPOINT)
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "resume"  # best.pt alone: not finished
    assert _fold_state(fold, run, HELD, predictions, epochs=1) == "trained"  # every epoch done, killed in finish()
    (run / files.LAST_CHECKPOINT).write_bytes(b"cut short")
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "fresh"  # a damaged last.pt trains again

    (fold / TRAINED_MARK).write_text("{}\n")
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "trained"  # finished: only predict
    (fold / DONE_MARK).write_text("{}\n")
    (predictions / "train").mkdir(parents=True)
    (predictions / "train" / "a.txt").write_text("")
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "trained"  # b's predictions are missing
    (predictions / "train" / "b.txt").write_text("")
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "done"
    (run / files.BEST_CHECKPOINT).unlink()
    assert _fold_state(fold, run, HELD, predictions, epochs=3) == "fresh"  # the markers without the model

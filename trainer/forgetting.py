"""Forgetting: the base classes' AP on the base val set before fine-tuning (the --weights model) and after.

With --replay BASE.yaml the run knows the base dataset, so it can measure what fine-tuning cost the classes the
checkpoint already knew: both models are evaluated on the base val split exactly as val is (same thresholds,
letterboxing and COCO protocol). The fine-tuned model's class columns are reordered to the base ids by name; a
base class the new data.yaml dropped scores nothing after (its AP is 0 where it has val boxes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from trainer.data.dataset import build_dataset
from trainer.data.loader import make_eval_loader
from trainer.evaluation import EvaluationResult
from trainer.model.inference import evaluate_model


class BaseClassView(nn.Module):
    """A detector whose decoded output has the base dataset's class columns (zeros for a class it lacks)."""

    def __init__(self, model: nn.Module, model_names: list[str], base_names: list[str]):
        super().__init__()
        self.model = model
        self.columns = [model_names.index(name) if name in model_names else -1 for name in base_names]

    def forward(self, images: Tensor) -> Tensor:
        decoded = self.model(images)
        boxes, scores = decoded[:, :4], decoded[:, 4:]
        zeros = torch.zeros_like(scores[:, :1])
        picked = [scores[:, c:c + 1] if c >= 0 else zeros for c in self.columns]
        return torch.cat([boxes, *picked], dim=1)


def measure_forgetting(run: Any, after: nn.Module, after_names: list[str]) -> dict[str, Any]:
    """forgetting.json: per base class, AP50 and AP50-95 on the base val set before and after, and the drop."""
    from trainer.finetune import load_source

    config, index = run.settings.train, run.replay_index
    base_names = list(index.names)
    dataset = build_dataset(index, "val", run.settings.data.imgsz, None, max_pixels=run.settings.data.max_pixels)
    loader = make_eval_loader(dataset, config.batch, run.settings.data.workers, run.device.device)
    arguments = (run.device.device, config.conf, config.iou, config.max_det, run.device.amp_dtype)
    source, source_names, _ = load_source(config.weights, config.weights_names)
    before, _ = evaluate_model(BaseClassView(source.to(run.device.device), source_names, base_names), loader,
                               index, *arguments)
    after_result, _ = evaluate_model(BaseClassView(after, after_names, base_names), loader, index, *arguments)
    return forgetting_table(before, after_result, str(index.config.yaml_path))


def forgetting_table(before: EvaluationResult, after: EvaluationResult, dataset: str) -> dict[str, Any]:
    rows = []
    for old, new in zip(before.per_class_rows(), after.per_class_rows()):
        drop = (old["ap50_95"] - new["ap50_95"]) if old["ap50_95"] is not None and new["ap50_95"] is not None \
            else None
        rows.append({"class": old["class"], "instances": old["instances"], "ap50_before": old["ap50"],
                     "ap50_after": new["ap50"], "ap50_95_before": old["ap50_95"], "ap50_95_after": new["ap50_95"],
                     "ap50_95_drop": drop})
    return {"dataset": dataset, "split": "val", "classes": rows}

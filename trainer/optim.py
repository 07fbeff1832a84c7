"""Building the optimizer: three parameter groups, and the `auto` choice between SGD and AdamW.

Weight decay is applied to convolution/linear weights only: decaying BatchNorm scales and biases pulls them
toward zero for no regularisation benefit (they do not scale the function's complexity), a common practice
since "Bag of Tricks" (He et al. 2019). Group order is fixed: [weights, batchnorm weights, biases], which the
schedule relies on. Frozen parameters (requires_grad off, trainer/finetune.py) are kept in their groups:
without a gradient the optimizers skip them, and unfreezing after --freeze-epochs needs no new optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("auto", "SGD", "AdamW")
AUTO_SGD_MIN_ITERATIONS = 10_000  # below this many steps AdamW converges faster; above, SGD generalises better


def choose_optimizer(name: str, total_iterations: int, lr0: float | None,
                     adamw_lr: float = 0.001) -> tuple[str, float]:
    """Resolve `auto` and the default learning rate: (optimizer name, lr0). `adamw_lr`: AdamW's default (the
    classifier's is lower: trainer/classify_loop.py)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if name == "auto":
        name = "SGD" if total_iterations > AUTO_SGD_MIN_ITERATIONS else "AdamW"
    default_lr = 0.01 if name == "SGD" else adamw_lr
    return name, lr0 if lr0 is not None else default_lr


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
                    ) -> torch.optim.Optimizer:
    weights, norm_weights, biases = [], [], []
    for module in model.modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if parameter_name == "bias":
                biases.append(parameter)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
                norm_weights.append(parameter)
            else:
                weights.append(parameter)
    groups = [{"params": weights, "weight_decay": weight_decay},
              {"params": norm_weights, "weight_decay": 0.0},
              {"params": biases, "weight_decay": 0.0}]
    if name == "SGD":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "AdamW":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {name!r}")

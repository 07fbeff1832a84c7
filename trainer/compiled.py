"""`doctor train --compile`: the training forward, and so its backward, through torch.compile (inductor).

Only the training step goes through the compiled callable; `Run.model` stays the plain module (or its DDP
wrapper). torch.compile's wrapper module would put an `_orig_mod.` prefix on every state_dict key, so keeping it
out of the run leaves checkpoints, the EMA, evaluation (eager, on the EMA or the plain model), export and resume
exactly as without --compile. Under DDP the DDP-wrapped module is compiled, as torch's DDP notes recommend
(apply DDP first, then compile): dynamo then splits the graph at DDP's gradient buckets so all-reduce still
overlaps the backward.

torch compiles lazily: the forward at its first call, the backward at its first backward. A failure there (no
C++ compiler, a platform inductor does not support) becomes one DoctorError line instead of a page of inductor
traceback. Later steps may recompile (automatic dynamic shapes, `dynamic=None`): the first change of a dimension,
such as the smaller last batch of an epoch (batch) or another --multi-scale size (height and width), triggers a
recompile with that dimension symbolic, which then serves its other values. That is expected, not an error;
only compiler errors are turned into the same line there, any other error is the model's own and keeps its
traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dataset_doctor.errors import DoctorError

BACKEND = "inductor"  # torch.compile's default backend and mode; tests swap in a cheaper one


def _compiler_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the compiler failed", not "the model failed" (checked after the first step)."""
    from torch._dynamo.exc import TorchDynamoException  # BackendCompilerFailed, InductorError, Unsupported, ...

    kinds: list[type[BaseException]] = [TorchDynamoException]
    try:
        from torch._inductor.exc import CppCompileError, CUDACompileError

        kinds += [CppCompileError, CUDACompileError]
    except ImportError:  # pragma: no cover - inductor's layout of another torch version
        pass
    return tuple(kinds)


class CompiledForward:
    """The model's training forward through torch.compile; failures while compiling become one line."""

    def __init__(self, model: nn.Module, log: Callable[[str], None] = lambda message: None):
        try:
            self.compiled = torch.compile(model, backend=BACKEND, dynamic=None)
        except Exception as error:  # e.g. dynamo refusing this Python version
            raise _could_not_compile(error) from None
        self.log = log
        self.proven = False  # a forward and a backward ran compiled: later failures are the model's own
        self.first_call: float | None = None

    def __call__(self, images: torch.Tensor) -> Any:
        if self.first_call is None:
            self.first_call = time.perf_counter()
        with self.guard():
            return self.compiled(images)

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), whose first call compiles the backward graph; then says what compiling cost."""
        with self.guard():
            loss.backward()
        if not self.proven and self.first_call is not None:
            self.log(f"--compile: the first training step took {time.perf_counter() - self.first_call:.1f} s "
                     "(compiling forward and backward); a new input shape compiles again")
        self.proven = True

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            if self.proven and not isinstance(error, _compiler_errors()):
                raise
            raise _could_not_compile(error) from None


def _could_not_compile(error: BaseException) -> DoctorError:
    text = str(error).strip()
    first_line = text.splitlines()[0][:200] if text else ""
    return DoctorError(f"--compile could not compile the model ({type(error).__name__}"
                       + (f": {first_line}" if first_line else "") + "); run without --compile")

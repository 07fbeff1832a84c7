"""Starting a training run: one process, or one process per device through torch.distributed.

Three ways in, one training function:
- `doctor train ... --device 0` (or cpu): this process trains.
- `doctor train ... --device 0,1,2,3`: this process spawns one worker per GPU (torch.multiprocessing) with the
  standard env:// rendezvous on a free local port, NCCL backend.
- `torchrun --nproc_per_node N -m dataset_doctor train ...`: torchrun starts the processes and sets RANK,
  WORLD_SIZE, LOCAL_RANK and the rendezvous; each process trains its share. NCCL on GPUs, gloo on CPU (so a
  distributed run can be tested without a GPU: `--device cpu`).

The classifier (trainer/classify_loop.py) starts the same three ways through launch_classifier.

`--batch` is the total batch: each of N processes takes batch / N images per step, and the loss is scaled so the
gradient equals a single-process step on the whole batch (see trainer/loop.py). Learning rates therefore need no
rescaling when the number of GPUs changes. Rank 0 alone logs, evaluates, checkpoints and writes the run directory.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console

from dataset_doctor.dataset.datayaml import load_data_yaml
from dataset_doctor.errors import DoctorError
from trainer import run_dir as files
from trainer.config import TrainSettings
from trainer.devices import choose_device

# Rank 0 evaluates while the other ranks wait at the next collective: allow for a long evaluation.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


def launch_training(settings: TrainSettings | None, resume: Path | None = None,
                    console: Console | None = None, on_evaluation: Callable[[Path, dict], None] | None = None) -> Path:
    """Train and return the run directory (resume: `settings` come from the run's args.yaml).

    report.html is the caller's: `doctor train` calls reports.training_report.write_training_report(run_dir)
    after this returns (the trainer never imports reports/). on_evaluation: trainer.loop.train's hook, on the
    single-process and torchrun paths; processes spawned per GPU send rank 0's calls back to this process,
    which runs the hook (it need not be picklable, and it runs where `doctor train` runs).
    """
    from trainer.loop import train

    if resume is not None:
        settings = TrainSettings.from_dict(files.read_args(Path(resume)))
    else:  # before any process starts: the distributed launchers create the run directory themselves
        config = settings.train
        files.check_run_location(config.project, config.name, config.exist_ok, load_data_yaml(config.data))
    if _under_torchrun():
        return _train_as_torchrun_rank(settings, resume, console, on_evaluation)
    choice = choose_device(settings.train.device, settings.train.amp)
    if choice.distributed:
        return _spawn_one_process_per_gpu(settings, resume, choice.gpu_ids, on_evaluation)
    return train(settings, resume=resume, console=console, on_evaluation=on_evaluation)


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ)


def _train_as_torchrun_rank(settings: TrainSettings, resume: Path | None, console: Console | None,
                            on_evaluation: Callable[[Path, dict], None] | None = None) -> Path:
    from trainer.loop import train

    with _torchrun_group(settings.train.device) as (rank, world_size, device):
        run_dir = _shared_run_dir(settings, resume, rank)
        return train(settings, resume=resume, console=console, rank=rank, world_size=world_size, run_dir=run_dir,
                     device=device, on_evaluation=on_evaluation)


@contextlib.contextmanager
def _process_group(backend: str, **ranks: int) -> Iterator[None]:
    """Join a process group for the block. On a normal exit every rank meets at a barrier before any leaves:
    a rank whose peer closed its connections while it was still tearing down its own can die in gloo with
    SIGABRT (seen once in a resumed torchrun run, rank 1, after its last epoch). After an error the group is
    left at once; a barrier then would wait for a rank that may never come."""
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, **ranks)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def _torchrun_group(device_spec: str) -> Iterator[tuple[int, int, torch.device]]:
    """Join torchrun's process group for the whole block: (rank, world_size, this rank's device). NCCL on the
    rank's GPU unless --device is cpu or there is no GPU, then gloo on the CPU; the group is left on exit."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device_spec.strip().lower() != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    with _process_group("nccl" if use_cuda else "gloo"):
        yield rank, world_size, device


def _shared_run_dir(settings: TrainSettings, resume: Path | None, rank: int) -> Path:
    """Rank 0 picks (creates) the run directory and tells the others."""
    chosen = [str(resume) if resume is not None else None]
    if rank == 0 and resume is None:
        config = settings.train
        chosen = [str(files.new_run_dir(config.project, config.name, config.exist_ok))]
    dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0])


def _spawn_one_process_per_gpu(settings: TrainSettings, resume: Path | None, gpu_ids: tuple[int | None, ...],
                               on_evaluation: Callable[[Path, dict], None] | None = None) -> Path:
    """One worker per id (None: a CPU worker on gloo, how the tests run this path without GPUs). Rank 0's
    on_evaluation calls come back through a queue and run here, in order, while the workers train."""
    if settings.train.batch % len(gpu_ids):
        raise DoctorError(f"--batch {settings.train.batch} does not split evenly over {len(gpu_ids)} GPUs")
    config = settings.train
    run_dir = Path(resume) if resume is not None else files.new_run_dir(config.project, config.name,
                                                                         config.exist_ok)
    port = _free_port()
    events = mp.get_context("spawn").SimpleQueue() if on_evaluation is not None else None
    workers = mp.spawn(_spawned_worker, args=(len(gpu_ids), port, settings, resume, run_dir, gpu_ids, events),
                       nprocs=len(gpu_ids), join=False)
    try:
        while not workers.join(timeout=0.5):
            _relay(events, on_evaluation)
        _relay(events, on_evaluation)  # what rank 0 sent after the last poll: the final evaluation's call
    except BaseException:
        for process in workers.processes:  # a failed hook (or Ctrl-C) stops the run, as on one process
            if process.is_alive():
                process.terminate()
        raise
    return run_dir


def _relay(events, on_evaluation: Callable[[Path, dict], None] | None) -> None:
    while events is not None and on_evaluation is not None and not events.empty():
        run_dir, progress = events.get()
        on_evaluation(Path(run_dir), progress)


def _spawned_worker(rank: int, world_size: int, port: int, settings: TrainSettings, resume: Path | None,
                    run_dir: Path, gpu_ids: tuple[int | None, ...], events=None) -> None:
    from trainer.loop import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    gpu = gpu_ids[rank]
    device = torch.device("cpu") if gpu is None else torch.device("cuda", gpu)
    if gpu is not None:
        torch.cuda.set_device(device)

    def send(directory: Path, progress: dict) -> None:  # to the launching process, which runs the hook
        events.put((str(directory), progress))

    with _process_group("gloo" if gpu is None else "nccl", rank=rank, world_size=world_size):
        train(settings, resume=resume, rank=rank, world_size=world_size, run_dir=run_dir, device=device,
              on_evaluation=send if events is not None and rank == 0 else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_classifier(config, resume: Path | None = None, log=print) -> Path:
    """The classifier's launcher: one process, torchrun's ranks, or one spawned process per GPU of --device 0,1.

    config: a trainer.config.ClassifyConfig (with `resume`, read from the run's last.pt by train_classifier).
    Returns the run directory (rank 0 creates it; a resumed run keeps its own)."""
    from trainer.checkpoint import load_checkpoint
    from trainer.classify_loop import train_classifier
    from trainer.config import ClassifyConfig

    if resume is not None:
        last = Path(resume) / files.WEIGHTS_DIR / "last.pt" if Path(resume).is_dir() else Path(resume)
        config = ClassifyConfig(**load_checkpoint(last)["config"])
    if _under_torchrun():
        with _torchrun_group(config.device) as (rank, world_size, device):
            run_dir = _shared_classify_run_dir(config, resume, rank)
            return train_classifier(config, resume=resume, log=log, rank=rank, world_size=world_size,
                                    run_dir=run_dir, device=device)
    choice = choose_device(config.device, config.amp)
    if not choice.distributed:
        return train_classifier(config, resume=resume, log=log)
    gpu_ids = choice.gpu_ids
    if config.batch % len(gpu_ids):
        raise DoctorError(f"--batch {config.batch} does not split evenly over {len(gpu_ids)} GPUs")
    run_dir = Path(resume) if resume is not None else files.new_run_dir(config.project, config.name,
                                                                         config.exist_ok)
    mp.spawn(_spawned_classifier, args=(len(gpu_ids), _free_port(), config, resume, run_dir, gpu_ids),
             nprocs=len(gpu_ids), join=True)
    return run_dir


def _shared_classify_run_dir(config, resume: Path | None, rank: int) -> Path | None:
    """Rank 0 creates the run directory and tells the others (a resumed run: train_classifier finds its own)."""
    if resume is not None:
        return None
    chosen = [str(files.new_run_dir(config.project, config.name, config.exist_ok)) if rank == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0])


def _spawned_classifier(rank: int, world_size: int, port: int, config, resume: Path | None, run_dir: Path,
                        gpu_ids: tuple[int, ...]) -> None:
    from trainer.classify_loop import train_classifier

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    device = torch.device("cuda", gpu_ids[rank])
    torch.cuda.set_device(device)
    with _process_group("nccl", rank=rank, world_size=world_size):
        train_classifier(config, resume=resume, log=print if rank == 0 else (lambda *_: None), rank=rank,
                         world_size=world_size, run_dir=None if resume is not None else run_dir, device=device)

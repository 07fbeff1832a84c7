"""trainer/core_sharing.py: torch gets fewer threads while other programs use the cores, and all of them back."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from trainer import core_sharing, loop
from trainer.config import TrainConfig, TrainSettings
from trainer.core_sharing import CoreSharing, CpuSample, adapting_wanted, others_cores, own_ticks, threads_for
from trainer.data.config import AugmentConfig, DataConfig
from trainer.loop import train

HAS_PROC = Path("/proc/stat").is_file() and Path("/proc/self/task").is_dir()
BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"

STAT = """cpu  900 90 300 5000 40 0 10 7 0 0
cpu0 100 10 50 2000 20 0 5 3 0 0
cpu1 300 30 100 1000 10 0 2 2 0 0
cpu2 500 50 150 2000 10 0 3 2 0 0
intr 12345 0 0
ctxt 999
"""


def test_busy_ticks_count_only_this_process_cpus_and_leave_out_idle_iowait_and_steal():
    assert core_sharing.busy_ticks({0, 2}, STAT) == (100 + 10 + 50 + 0 + 5) + (500 + 50 + 150 + 0 + 3)
    assert core_sharing.busy_ticks({1}, STAT) == 300 + 30 + 100 + 2
    assert core_sharing.busy_ticks({7}, STAT) == 0


def test_process_ticks_read_fields_14_to_17_even_when_the_name_holds_spaces_and_parentheses():
    fields_after_name = ["S"] + [str(number) for number in range(1, 17)]  # fields 3..19
    fields_after_name[11:15] = ["40", "5", "300", "20"]  # utime stime cutime cstime
    line = "4242 (pt worker) (1)) " + " ".join(fields_after_name) + "\n"
    assert core_sharing.process_ticks(line) == 40 + 5 + 300 + 20


def test_others_cores_are_the_busy_ticks_this_process_did_not_spend():
    hz = core_sharing._CLOCK_TICKS
    before, after = CpuSample(10.0, 1_000, 400), CpuSample(12.0, 1_000 + 3 * hz, 400 + 2 * hz)
    assert others_cores(before, after) == pytest.approx(0.5)  # 3 cores' ticks in 2 s, 2 of them ours
    assert others_cores(before, CpuSample(12.0, 1_000, 400 + hz)) == 0.0  # a child's ticks ahead of the CPU's
    assert others_cores(before, before) == 0.0


@pytest.mark.parametrize("cores, others, configured, threads", [
    (2, 0.0, 2, 2), (2, 0.4, 2, 2), (2, 0.8, 2, 1), (2, 1.9, 2, 1), (16, 3.2, 16, 13), (16, 0.0, 4, 4),
    (1, 0.0, 2, 1)])
def test_threads_leave_the_others_their_share_and_stay_between_one_and_the_configured_count(
        cores, others, configured, threads):
    assert threads_for(cores, others, configured) == threads


@pytest.mark.parametrize("environ, threads, deterministic, wanted", [
    ({}, 2, False, True),
    ({}, 1, False, False),  # one thread never wakes the pool: nothing to adapt
    ({}, 2, True, False),  # the thread count can change float sums
    ({"OMP_WAIT_POLICY": "PASSIVE"}, 2, False, False),  # the user chose how the threads wait
    ({"GOMP_SPINCOUNT": "1000"}, 2, False, False),
    ({core_sharing.OPT_OUT: "0"}, 2, False, False),
    ({core_sharing.OPT_OUT: "1"}, 2, False, True),
])
def test_adapting_is_off_where_the_user_decided_or_it_cannot_help(environ, threads, deterministic, wanted):
    assert adapting_wanted(threads, deterministic, environ) is (wanted and HAS_PROC)


class Scripted:
    """others_cores replaced by a script of readings, one per tick."""

    def __init__(self, readings: list[float]) -> None:
        self.readings = list(readings)

    def __call__(self, before, after) -> float:
        return self.readings.pop(0)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_a_change_needs_two_windows_that_agree_and_the_threads_come_back(monkeypatch, two_threads):
    monkeypatch.setattr(core_sharing, "_cpus", lambda: {0, 1})
    monkeypatch.setattr(core_sharing, "others_cores", Scripted([0.9, 0.1, 0.9, 1.0, 1.2, 0.0, 0.0]))
    messages: list[str] = []
    sharing = CoreSharing(2, True, log=messages.append, window_s=0.0)
    threads_after_each_tick = []
    for _ in range(7):
        sharing.tick()
        threads_after_each_tick.append(torch.get_num_threads())
    # a burst (0.9 then 0.1) changes nothing; two busy windows in a row do; two free windows restore
    assert threads_after_each_tick == [2, 2, 2, 1, 1, 1, 2]
    assert messages == [f"other programs use 1.0 of 2 cores: 1 torch thread while they do "
                        f"({core_sharing.OPT_OUT}=0 keeps 2)", "the cores are free again: 2 torch threads"]
    assert sharing.changes == 2


def test_a_disabled_sharing_never_reads_proc_or_changes_threads(monkeypatch, two_threads):
    monkeypatch.setattr(core_sharing, "sample", lambda cpus: pytest.fail("read /proc"))
    sharing = CoreSharing(2, False, window_s=0.0)
    sharing.tick()
    sharing.restore()
    assert torch.get_num_threads() == 2


def _spin_and_measure(start_busy, seconds: float = 1.5) -> tuple[float, float]:
    """(others' cores, ours with our children) while start_busy()'s process spins for `seconds`."""
    cpus = core_sharing._cpus()
    busy = start_busy()
    time.sleep(0.2)
    before = core_sharing.sample(cpus)
    time.sleep(seconds)
    after = core_sharing.sample(cpus)
    busy.wait()
    ours = (after.own_ticks - before.own_ticks) / core_sharing._CLOCK_TICKS / (after.at - before.at)
    return others_cores(before, after), ours


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
def test_a_busy_child_counts_as_ours_and_a_busy_stranger_as_the_others():
    child = _spin_and_measure(lambda: subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=2.5)]))
    # a process that is not ours: started by a shell that exits at once, so init adopts it
    stranger = _spin_and_measure(lambda: subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" -c "$0" & wait_pid=$!; echo $wait_pid', BUSY.format(seconds=2.5)],
        stdout=subprocess.DEVNULL))
    assert child[1] > 0.6 and child[0] < child[1]
    assert stranger[0] > 0.6 and stranger[1] < 0.3
    time.sleep(1.0)  # the stranger is not waited for: let it end before the next test measures anything


def test_own_ticks_grow_with_this_process_work():
    before = own_ticks()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert own_ticks() - before >= 0.2 * core_sharing._CLOCK_TICKS


@pytest.fixture(scope="module")
def small_yaml(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("sharing") / "digits", seed=4,
                                spec=SampleSpec(train_images=20, val_images=4, min_side=64, max_side=96,
                                                min_object_px=8, max_object_px=40, inject_defects=False))


@pytest.mark.skipif(not HAS_PROC, reason="reads /proc")
@pytest.mark.parametrize("deterministic", [False, True])
def test_a_cpu_training_gives_up_a_thread_while_others_use_the_cores_and_ends_with_all(
        small_yaml, tmp_path, monkeypatch, isolated_cache, two_threads, deterministic):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", core_sharing.OPT_OUT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(core_sharing, "WINDOW_S", 0.0)
    monkeypatch.setattr(core_sharing, "_cpus", lambda: {0, 1})
    monkeypatch.setattr(core_sharing, "others_cores", lambda before, after: 1.5)
    seen_threads: list[int] = []  # after each tick of the training loop's CoreSharing

    def recording(run):
        sharing = made(run)
        real_tick = sharing.tick
        sharing.tick = lambda: (real_tick(), seen_threads.append(torch.get_num_threads()))
        return sharing

    made = loop.core_sharing
    monkeypatch.setattr(loop, "core_sharing", recording)
    out = io.StringIO()
    config = TrainConfig(data=str(small_yaml), epochs=1, batch=4, save_batches=0, tensorboard=False,
                         project=str(tmp_path), name="run", device="cpu", threads=2, deterministic=deterministic)
    train(TrainSettings(config, DataConfig(imgsz=64, workers=0), AugmentConfig.off()),
          console=Console(file=out, width=200), progress=False)
    assert len(seen_threads) == 5  # one tick per step: 20 images, batch 4
    if deterministic:
        assert seen_threads == [2] * 5 and "torch thread" not in out.getvalue()
    else:
        assert seen_threads == [2, 1, 1, 1, 1]
        assert "other programs use 1.5 of 2 cores: 1 torch thread" in out.getvalue()
    assert torch.get_num_threads() == 2  # the configured count again when the run ends

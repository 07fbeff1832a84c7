"""trainer/memory_policy.py: inside it, blocks freed by one step are reused by the next without page faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trainer import memory_policy
from trainer.memory_policy import freed_memory_kept

# Run in a fresh interpreter: what glibc does depends on what the process allocated before.
FAULTS_PER_STEP = """
import ctypes, json, resource
from trainer.memory_policy import freed_memory_kept

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

def step(size=64 * 2**20):  # a block past glibc's 32 MiB mmap ceiling, written, then freed: an activation
    block = libc.malloc(size)
    libc.memset(block, 1, size)
    libc.free(block)

def faults_of_a_step():
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults_of_a_step()
with freed_memory_kept() as applied:
    inside = faults_of_a_step()
print(json.dumps({"outside": outside, "inside": inside, "applied": applied}))
"""


@pytest.mark.skipif(memory_policy._glibc() is None, reason="mallopt is glibc's")
def test_a_step_reuses_the_previous_steps_memory_inside_and_faults_it_all_in_outside():
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MALLOC_") and name != memory_policy.OPT_OUT}
    output = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], env=env, capture_output=True, text=True,
                            check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert result["applied"]
    assert result["outside"] > 15_000  # 64 MiB = 16,384 pages, mapped afresh each time
    assert result["inside"] < 1_000


@pytest.mark.parametrize("name, value", [(memory_policy.OPT_OUT, "0"), ("MALLOC_ARENA_MAX", "2")])
def test_an_opt_out_or_the_users_own_malloc_settings_are_respected(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with freed_memory_kept() as applied:
        assert not applied

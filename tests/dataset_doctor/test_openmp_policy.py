"""The passive OpenMP wait policy is in place before torch loads, and a user's own choice wins."""

import os
import subprocess
import sys

import pytest

_PROBE = ("import {module}, os, sys; "
          "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def _probe(module: str, policy: str | None) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    completed = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)], env=env,
                               capture_output=True, text=True, check=True)
    return completed.stdout.split()


@pytest.mark.parametrize("module", ["dataset_doctor", "trainer.loop"])
def test_passive_by_default(module):
    policy, _ = _probe(module, None)
    assert policy == "PASSIVE"


def test_user_policy_kept():
    assert _probe("trainer.loop", "ACTIVE")[0] == "ACTIVE"


def test_policy_set_before_torch_is_imported():
    """Importing the packages themselves must not load torch, or the variable would come too late for libgomp."""
    assert _probe("dataset_doctor, trainer", None) == ["PASSIVE", "False"]

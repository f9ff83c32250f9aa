"""Multi-process checks (torchrun, gloo on CPU). The notebook 10_distributed runs the two-process comparison and the
failure of rank 1; these cover the other failing rank and the launcher's refusal outside torchrun."""
import os, subprocess, sys
import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_available(), reason='torch.distributed not available')


def test_rank0_failure_stops_rank1():
    from flatness_nb.distributed import launch
    r = launch(2, '--check', '--fail-rank', '0', timeout=180)
    assert r.returncode != 0
    assert 'rank 0: ValueError' in r.stderr and 'rank 1: DistributedError' in r.stderr


def test_sharded_sums_needs_init():
    from flatness_nb.distributed import sharded_sums
    with pytest.raises(RuntimeError, match='not initialised'):
        with sharded_sums(): pass


def test_init_from_env_outside_torchrun():
    env = {k: v for k, v in os.environ.items() if k != 'RANK'}
    r = subprocess.run([sys.executable, '-c', 'from flatness_nb.distributed import init_from_env; init_from_env()'],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0 and 'launch with torchrun' in r.stderr

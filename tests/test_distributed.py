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


def test_cli_measure_distributed_equals_single(tmp_path):
    """`flatness-nb measure --distributed` under torchrun (2 processes) writes the same numbers as one process."""
    import json, torch, torch.nn as nn
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).double(), tmp_path / 'net.pt')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    common = ['measure', str(tmp_path / 'net.pt'), 'digits', '--quiet']
    r1 = subprocess.run([sys.executable, '-m', 'flatness_nb.cli', *common, '--out', str(tmp_path / 'one')],
                        capture_output=True, text=True, timeout=300, env=env)
    r2 = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m',
                         'flatness_nb.cli', *common, '--distributed', '--out', str(tmp_path / 'two')],
                        capture_output=True, text=True, timeout=300, env=env)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr[-1000:] + r2.stderr[-1000:]
    one, two = (json.loads((tmp_path / d / 'measures.json').read_text()) for d in ('one', 'two'))
    for a, b in zip(one, two):
        for k, v in a.items():
            if isinstance(v, float): assert abs(v - b[k]) <= 1e-10 * abs(v), (k, v, b[k])


def test_cli_measure_distributed_bad_layer_every_rank_reports(tmp_path):
    """A bad layer name under torchrun: every rank prints the one-line error and the launch fails (no hang, no traceback from our code)."""
    import torch, torch.nn as nn
    torch.save(nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).double(), tmp_path / 'net.pt')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m',
                        'flatness_nb.cli', 'measure', str(tmp_path / 'net.pt'), 'digits', '--quiet', '--layer', 'fc9',
                        '--distributed'], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert r.returncode != 0
    assert r.stderr.count("flatness-nb measure: error:") == 2 and "fc9" in r.stderr, r.stderr[-2000:]
    assert 'flatness_nb/' not in r.stderr, r.stderr[-2000:]   # torchrun's own traceback is fine; none from our code


def test_unreduced_measures_refuse_sharded_data(tmp_path):
    """Measures that are not built from sums and maxima over samples refuse sharded data instead of returning a
    shard-local value; sum-built ones (compression included) run."""
    code = f"""
import torch, torch.nn as nn, torch.nn.functional as F, torch.distributed as dist
dist.init_process_group('gloo', init_method='file://{tmp_path}/store', rank=0, world_size=1)
from flatness_nb.distributed import sharded_sums
from flatness_nb.compression import compression_measures
from flatness_nb.robustness import max_feature_robustness
from flatness_nb.hessian import layer_hessian_trace
m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval(); X, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
with sharded_sums(): layer_hessian_trace(m, '0', (X, y)); compression_measures(m, (X, y))   # reduced measures run
try:
    with sharded_sums(): max_feature_robustness(m, '2', (X, y), F.cross_entropy, 0.1)
except NotImplementedError as e: print('refused:', e)
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'refused: max_feature_robustness does not combine' in r.stdout, r.stderr[-2000:]

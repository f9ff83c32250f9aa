"Training toward flat minima: DDP with a one-process gloo group, the `train` command end to end, bit-for-bit base steps."
import argparse, copy, csv, os, socket
import pytest, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist
from flatness_nb.training import (FlatTrainer, add_train_parser, cmd_train, dense_penalty, flatness_penalty)

torch.set_num_threads(1)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def gloo():
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize('method', ['sam', 'asam', 'sam+flat'])
def test_ddp_first_pass_in_no_sync(gloo, method):
    "Under DDP the ascent pass runs in no_sync() once per step, and the weights equal the plain run's."
    X, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    plain = _net(); wrapped = nn.parallel.DistributedDataParallel(copy.deepcopy(plain))
    calls, orig = [], wrapped.no_sync
    def counted():
        calls.append(1); return orig()
    wrapped.no_sync = counted
    kw = dict(rho=0.05, lam=0.1, layers='2')
    t1 = FlatTrainer(plain, torch.optim.SGD(plain.parameters(), lr=0.1), method, **kw)
    t2 = FlatTrainer(wrapped, torch.optim.SGD(wrapped.parameters(), lr=0.1), method, **kw)
    for _ in range(3): t1.step((X, y)); t2.step((X, y))
    assert len(calls) == 3
    for a, b in zip(plain.parameters(), wrapped.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_zero_rho_lambda_bitwise():
    "ρ = 0 and λ = 0 reproduce the base optimiser (Adam here) bit for bit."
    X, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    def run(method, **kw):
        net = _net(); tr = FlatTrainer(net, torch.optim.Adam(net.parameters(), lr=1e-2), method, **kw)
        for i in range(4): tr.step((X[10 * i:10 * i + 10], y[10 * i:10 * i + 10]))
        return [p.detach() for p in net.parameters()]
    base = run('base')
    for m, kw in [('sam', dict(rho=0.0)), ('asam', dict(rho=0.0)), ('flat', dict(lam=0.0, layers='2')),
                  ('sam+flat', dict(rho=0.0, lam=0.0, layers='2'))]:
        assert all(torch.equal(a, b) for a, b in zip(base, run(m, **kw))), m


def test_penalty_gradient_matches_oracle():
    "The penalty's gradient with respect to every parameter equals the third-derivative oracle's (float64)."
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).double().eval()
    X, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    ps = dict(net.named_parameters())
    for lay in (['0', '2', '4'], '2'):
        g = torch.autograd.grad(flatness_penalty(net, lay, (X, y)), list(ps.values()))
        gd = torch.func.grad(dense_penalty(net, lay, (X, y)))({n: p.detach() for n, p in ps.items()})
        assert max((a - gd[n]).abs().max().item() for a, n in zip(g, ps)) < 1e-8


def _parser():
    p = argparse.ArgumentParser(); sub = p.add_subparsers(dest='cmd', required=True)
    dbg = argparse.ArgumentParser(add_help=False); dbg.add_argument('--debug', action='store_true')
    add_train_parser(sub, [dbg]); return p


def test_cli_train_writes_curves(tmp_path):
    "`train --method flat` writes curves.csv (one row per epoch) and curves.png."
    a = _parser().parse_args(['train', '--method', 'flat', '--lam', '0.1', '--epochs', '2', '--out', str(tmp_path)])
    rows = cmd_train(a)
    with open(tmp_path / 'curves.csv') as f: got = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in got] == [1, 2] and got[0]['method'] == 'flat'
    assert (tmp_path / 'curves.png').stat().st_size > 1000 and len(rows) == 2


def test_cli_refuses_bad_values(tmp_path):
    p = _parser()
    with pytest.raises(ValueError, match='--rho must be'):
        cmd_train(p.parse_args(['train', '--method', 'sam', '--rho', '-1', '--out', str(tmp_path)]))
    with pytest.raises(SystemExit):
        p.parse_args(['train', '--method', 'adam'])

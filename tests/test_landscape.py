"""End to end checks of `flatness_nb.landscape`: the `landscape` command on saved models (a parser built here, since
the lead wires it into `flatness-nb`), its JSON and PNG, PCA checkpoints from files, and its one-line errors."""
import argparse, json
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from flatness_nb.cli import CLIError, load_data
from flatness_nb.core import empirical_risk
from flatness_nb import cli
from flatness_nb.landscape import add_landscape_parser, cmd_landscape, directions, landscape


def parse(*argv):
    p = argparse.ArgumentParser(prog='flatness-nb')
    add_landscape_parser(p.add_subparsers(dest='cmd', required=True), cli)
    return p.parse_args(['landscape', *map(str, argv)])


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).double().eval()
    torch.save(m, tmp_path / 'mlp.pt')
    return m, tmp_path


def test_2d_centre_is_the_loss(saved):
    m, tmp = saved
    cmd_landscape(parse(tmp / 'mlp.pt', 'digits', '--points', 5, '--n', 200, '--dtype', 'float64', '--out', tmp / 'o'), cli)
    rep = json.loads((tmp / 'o' / 'landscape.json').read_text())
    X, y = load_data('digits', 'float64')
    assert len(rep['loss']) == 5 and len(rep['loss'][0]) == 5 and rep['n'] == 200
    assert rep['loss'][2][2] == empirical_risk(m, (X[:200], y[:200]))       # the CPU loop: bitwise
    assert (tmp / 'o' / 'landscape.png').stat().st_size > 1000


def test_1d_and_chunked_equal(saved):
    m, tmp = saved
    a = cmd_landscape(parse(tmp / 'mlp.pt', 'digits', '--dims', 1, '--points', 7, '--n', 100, '--dtype', 'float64',
                            '--out', tmp / 'a', '--range', -2, 2), cli)
    b = cmd_landscape(parse(tmp / 'mlp.pt', 'digits', '--dims', 1, '--points', 7, '--n', 100, '--dtype', 'float64',
                            '--out', tmp / 'b', '--range', -2, 2, '--chunk', 4), cli)
    assert a.loss.shape == (7,) and b.chunk == 4 and (a.loss - b.loss).abs().max() < 1e-13


def test_pca_from_checkpoint_files(saved):
    m, tmp = saved
    w = {k: v.detach().clone() for k, v in m.state_dict().items()}
    files = []
    for i in range(4):
        torch.manual_seed(i)
        torch.save({k: v + 0.1 * torch.randn_like(v) for k, v in w.items()}, tmp / f'c{i}.pt'); files += ['--checkpoint', tmp / f'c{i}.pt']
    L = cmd_landscape(parse(tmp / 'mlp.pt', 'digits', '--kind', 'pca', *files, '--points', 5, '--n', 100, '--out', tmp / 'p'), cli)
    rep = json.loads((tmp / 'p' / 'landscape.json').read_text())
    assert rep['kind'] == 'pca' and len(rep['info']['trajectory']) == 4 and 0 < sum(rep['info']['explained_variance']) <= 1
    assert max(abs(c) for c in rep['coords'][0]) >= max(abs(t) for r in rep['info']['trajectory'] for t in r)


@pytest.mark.parametrize('argv, msg', [
    (['--kind', 'pca'], 'needed by --kind pca'),
    (['--range', 1, -1], 'finite LO < HI'),
    (['--kind', 'pca', '--checkpoint', 'nope.pt'], "does not exist"),
])
def test_errors(saved, argv, msg):
    m, tmp = saved
    with pytest.raises(CLIError, match=msg):
        cmd_landscape(parse(tmp / 'mlp.pt', 'digits', '--n', 50, '--points', 3, '--out', tmp / 'e', *argv), cli)


def test_bad_directions_and_grid(saved):
    m, _ = saved
    X, y = load_data('digits', 'float64')
    d = directions(m, k=1)
    with pytest.raises(ValueError, match='empty'): landscape(m, (X[:20], y[:20]), d, [])
    with pytest.raises(ValueError, match='unknown parameters'): landscape(m, (X[:20], y[:20]), {'9.weight': torch.ones(1)}, [0.])
    with pytest.raises(ValueError, match='NaN or inf'): landscape(m, (X[:20], y[:20]), d, [0., float('nan')])
    m.train(); m.append(nn.Dropout(0.1))
    with pytest.raises(ValueError, match='eval'): landscape(m, (X[:20], y[:20]), directions(m, k=1), [0.])

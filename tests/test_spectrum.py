"Spectrum: eigenpairs and SLQ against dense float64, duck-typed operators, and the `spectrum` command end to end."
import argparse, json
import numpy as np, pytest, torch, torch.nn as nn
from flatness_nb.hessian import dense_hessian
from flatness_nb.operators import HessianOperator, GGNOperator
from flatness_nb import cli
from flatness_nb.spectrum import add_spectrum_parser, eigenpairs, layer_spectra, spectral_density, wasserstein1
from flatness_nb.testing import rel_err


@pytest.fixture
def setting():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 6)).double().eval()
    return m, (torch.randn(64, 8, dtype=torch.float64), torch.randint(0, 6, (64,)))


@pytest.mark.parametrize('which', ['LA', 'SA', 'LM'])
def test_eigenpairs_dense(setting, which):
    m, d = setting
    ev = torch.linalg.eigvalsh(dense_hessian(m, d))
    ref = {'LA': ev.flip(0), 'SA': ev, 'LM': ev[ev.abs().argsort(descending=True)]}[which][:6]
    e = eigenpairs(HessianOperator(m, d), 6, which)
    assert ((e.values - ref).abs() / ref.abs()).max() < 1e-6 and e.residuals.max() < 1e-6


def test_eigenpairs_scipy_and_curvlinops(setting):
    m, d = setting
    op = HessianOperator(m, d)
    ours = eigenpairs(op, 4).values
    assert rel_err(eigenpairs(op.to_scipy(), 4).values, ours) < 1e-10
    cl = pytest.importorskip('curvlinops')
    c = cl.GGNLinearOperator(m, nn.CrossEntropyLoss(), list(m.parameters()), [d])
    assert rel_err(eigenpairs(c, 3).values, eigenpairs(GGNOperator(m, d), 3).values) < 1e-8


def test_slq_w1(setting):
    m, d = setting
    op = HessianOperator(m, d)
    ev = torch.linalg.eigvalsh(dense_hessian(m, d))
    sd = spectral_density(op, 80, 30)
    assert wasserstein1(sd, ev) / (ev[-1] - ev[0]).item() < 0.01
    assert torch.allclose(sd.weights.sum(1), torch.ones(30, dtype=torch.float64))


def test_refusals(setting):
    m, d = setting
    op = HessianOperator(m, d)
    with pytest.raises(ValueError, match='which must be one of'): eigenpairs(op, 2, 'XX')
    with pytest.raises(ValueError, match='deflate'): spectral_density(op, 10, 2, deflate=500)
    with pytest.raises(ValueError, match='kind must be one of'): layer_spectra(m, d, ['0'], kind='fisher')


def test_cli(tmp_path):
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 10)).eval()
    torch.save(tiny, tmp_path / 'tiny.pt')
    p = argparse.ArgumentParser(); sub = p.add_subparsers(dest='cmd')
    add_spectrum_parser(sub, cli, [])
    a = p.parse_args(['spectrum', str(tmp_path / 'tiny.pt'), 'digits', '--layer', '2', '--n', '80', '--k', '2',
                      '--steps', '15', '--probes', '2', '--out', str(tmp_path / 'o')])
    a.func(a)
    rows = json.loads((tmp_path / 'o' / 'spectrum.json').read_text())
    assert [r['block'] for r in rows] == ['network', '2']
    assert (tmp_path / 'o' / 'spectrum.png').stat().st_size > 1000
    dens = json.loads((tmp_path / 'o' / 'spectrum_density.json').read_text())
    assert len(dens[0]['nodes']) == 2 and dens[0]['sigma'] > 0
    with pytest.raises(SystemExit): p.parse_args(['spectrum', 'x', 'digits', '--k', '0'])


def test_consumers_take_operators(setting):
    from flatness_nb.estimators import hutchpp_trace
    from flatness_nb.hessian import lambda_max
    from flatness_nb.spectrum import hutchpp_op, lambda_max_op
    m, d = setting
    op = HessianOperator(m, d)
    assert abs(lambda_max(op) - lambda_max(m, d)) < 1e-10 * abs(lambda_max(m, d))
    assert abs(lambda_max(op.to_scipy()) - lambda_max_op(op)) < 1e-10
    assert abs(hutchpp_trace(op, matvecs=30).value - hutchpp_trace(m, d, matvecs=30).value) < 1e-9
    assert abs(hutchpp_op(op, 30).value - hutchpp_trace(m, d, matvecs=30).value) < 1e-9


def test_hutchinson_estimators_take_operators(setting):
    "hutchinson_trace and residual_trace on an operator: the model path's value on the same probes, and near Tr."
    from flatness_nb.estimators import residual_trace
    from flatness_nb.hessian import hutchinson_trace
    from flatness_nb.operators import ResidualOperator, GGNOperator
    m, d = setting
    kw, w = dict(min_probes=6, max_probes=6, probes_per_pass=3), ['2.weight']
    a = hutchinson_trace(HessianOperator(m, d, params=w), **kw)
    assert abs(a.value - hutchinson_trace(m, d, params=w, **kw).value) < 1e-10 * (1 + abs(a.value))
    r = residual_trace(ResidualOperator(m, d, params=w), **kw).value
    assert abs(r - residual_trace(m, d, params=w, blockwise=False, **kw).value) < 1e-10 * (1 + abs(r))
    op = HessianOperator(m, d)
    e, tr = hutchinson_trace(op, max_probes=300), dense_hessian(m, d).trace().item()
    assert abs(e.value - tr) < 4 * e.stderr
    diff = residual_trace(op - GGNOperator(m, d), max_probes=300)
    assert diff.n > 0
    with pytest.raises(ValueError, match='a residual operator'): residual_trace(op)
    with pytest.raises(ValueError, match='op.block'): hutchinson_trace(op, d)
    with pytest.raises(ValueError, match='data are needed'): hutchinson_trace(m)


def test_layer_eigenvalues_and_measure_all(setting):
    "λ_min and each layer's top-k / λ_min against dense eigh, and as measure_all columns (eig_k)."
    from flatness_nb.measures import measure_all
    from flatness_nb.spectrum import layer_eigenvalues
    m, d = setting
    cols = layer_eigenvalues(m, d, k=2)
    ev = torch.linalg.eigvalsh(dense_hessian(m, d))
    assert abs(cols['lambda_min'] - ev[0].item()) < 1e-6 * ev.abs().max()
    for l in ('0', '2'):
        eb = torch.linalg.eigvalsh(dense_hessian(m, d, params=[f'{l}.weight', f'{l}.bias']))
        got = torch.tensor([cols[f'lambda_1[{l}]'], cols[f'lambda_2[{l}]'], cols[f'lambda_min[{l}]']])
        assert (got - torch.stack([eb[-1], eb[-2], eb[0]])).abs().max() < 1e-6 * eb.abs().max()
    row = measure_all(m, d, d, pac_bayes=False, compression=False, lanczos_iters=10, eig_k=2)
    assert all(abs(row[k] - v) < 1e-8 * (1 + abs(v)) for k, v in cols.items())
    assert 'lambda_min' not in measure_all(m, d, d, pac_bayes=False, compression=False, lanczos_iters=10)


def test_hutchinson_on_curvlinops(setting):
    "curvlinops' Hessian and GGN operators plug into hutchinson_trace and residual_trace (H - G): ours on the same probes."
    from flatness_nb.estimators import residual_trace
    from flatness_nb.hessian import hutchinson_trace
    cl = pytest.importorskip('curvlinops')
    m, d = setting
    args = (m, nn.CrossEntropyLoss(), list(m.parameters()), [d])
    H, G = cl.HessianLinearOperator(*args), cl.GGNLinearOperator(*args)
    kw = dict(min_probes=6, max_probes=6, probes_per_pass=3)
    a, b = hutchinson_trace(H, **kw).value, hutchinson_trace(HessianOperator(m, d), **kw).value
    assert abs(a - b) < 1e-9 * (1 + abs(b))
    from flatness_nb.operators import DifferenceOperator
    r = residual_trace(DifferenceOperator(H, G), **kw).value
    assert abs(r - residual_trace(HessianOperator(m, d) - GGNOperator(m, d), **kw).value) < 1e-9 * (1 + abs(r))

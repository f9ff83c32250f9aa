"""Differential test: a model with nn.MultiheadAttention and the same model with a hand-written attention (plain
nn.Linear in/out projections, same weights) must give the same numbers from every measure. Guards the library's
`mha_modules` context (which runs MHA's projections as module calls) against silently losing a parameter block."""
import math, pytest, torch, torch.nn as nn, torch.nn.functional as F
from flatness_nb.hessian import dense_hessian, hvp, hutchinson_trace, lambda_max, network_hessian_trace
from flatness_nb.testing import rel_err

TOL = 1e-8

class _ManualAttention(nn.Module):
    "Self-attention written out: in_proj (E -> 3E), softmax(QK^T/sqrt(h)) V per head, out_proj."
    def __init__(self, E=4, heads=2):
        super().__init__(); self.E, self.h = E, heads
        self.in_proj, self.out_proj = nn.Linear(E, 3 * E), nn.Linear(E, E)
    def forward(self, x):                                              # x (B, T, E)
        B, T, E = x.shape; d = E // self.h
        q, k, v = (t.reshape(B, T, self.h, d).transpose(1, 2) for t in self.in_proj(x).chunk(3, -1))
        a = torch.softmax(q @ k.mT / math.sqrt(d), -1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(B, T, E))

class _Net(nn.Module):
    "Tokens from a linear layer, one self-attention (MHA or written out), a mean over tokens, a classifier."
    def __init__(self, manual):
        super().__init__(); self.manual = manual
        self.inp = nn.Linear(5, 12)
        self.att = _ManualAttention() if manual else nn.MultiheadAttention(4, 2, batch_first=True)
        self.out = nn.Linear(4, 3)
    def forward(self, x):
        h = torch.tanh(self.inp(x)).reshape(len(x), 3, 4)
        a = self.att(h) if self.manual else self.att(h, h, h, need_weights=False)[0]
        return self.out(a.mean(1))

NAMES = {'att.in_proj_weight': 'att.in_proj.weight', 'att.in_proj_bias': 'att.in_proj.bias'}

@pytest.fixture(scope='module')
def pair():
    old = torch.get_default_dtype(); torch.set_default_dtype(torch.float64)
    torch.manual_seed(0); a = _Net(False).eval(); b = _Net(True).eval()
    sd = {NAMES.get(k, k): v for k, v in a.state_dict().items()}
    b.load_state_dict(sd)
    g = torch.Generator().manual_seed(1)
    data = (torch.randn(9, 5, generator=g), torch.randint(0, 3, (9,), generator=g))
    yield a, b, data
    torch.set_default_dtype(old)

def test_same_function(pair):
    a, b, (X, y) = pair
    with torch.no_grad(): assert rel_err(a(X), b(X)) < 1e-14

def test_same_names_order(pair):
    a, b, _ = pair
    assert [NAMES.get(n, n) for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]

def test_dense_hessian(pair):
    a, b, data = pair
    assert rel_err(dense_hessian(a, data), dense_hessian(b, data)) < TOL

def test_hvp_with_the_models_own_names(pair):
    a, b, data = pair
    g = torch.Generator().manual_seed(2)
    va = {n: torch.randn((2, *p.shape), generator=g) for n, p in a.named_parameters()}   # two probe directions
    vb = {NAMES.get(n, n): v for n, v in va.items()}
    ha, hb = hvp(a, data, F.cross_entropy, va), hvp(b, data, F.cross_entropy, vb)
    for n in va: assert rel_err(ha[n], hb[NAMES.get(n, n)]) < TOL, n

@pytest.mark.parametrize('params', [None, ['att.in_proj_weight'], ['att.out_proj.weight', 'att.in_proj_bias']])
def test_estimators(pair, params):
    a, b, data = pair
    pb = None if params is None else [NAMES.get(n, n) for n in params]
    assert rel_err(lambda_max(a, data, params=params), lambda_max(b, data, params=pb)) < 1e-7
    ea, eb = hutchinson_trace(a, data, params=params, seed=3), hutchinson_trace(b, data, params=pb, seed=3)
    assert rel_err(ea.value, eb.value) < TOL and rel_err(ea.stderr, eb.stderr) < TOL

def test_network_trace(pair):
    a, b, data = pair
    exact = dense_hessian(b, data).trace().item()
    ea, eb = network_hessian_trace(a, data), network_hessian_trace(b, data)
    assert rel_err(ea.value, exact) < TOL and rel_err(eb.value, exact) < TOL

def test_operators_and_spectrum(pair):
    from flatness_nb.operators import HessianOperator, GGNOperator
    from flatness_nb.spectrum import eigenpairs
    a, b, data = pair
    for Op in (HessianOperator, GGNOperator):
        oa, ob = Op(a, data), Op(b, data)
        I = torch.eye(oa.shape[0])
        assert rel_err(oa @ I, ob @ I) < TOL, Op.__name__
    ea, eb = eigenpairs(HessianOperator(a, data), k=2), eigenpairs(HessianOperator(b, data), k=2)
    assert rel_err(ea.values, eb.values) < 1e-7

def test_relative_flatness_and_penalty(pair):
    from flatness_nb.flatness import relative_flatness
    from flatness_nb.training import flatness_penalty
    a, b, data = pair
    for layer in ('att.out_proj', 'att.in_proj', 'out', 'inp'):
        assert rel_err(relative_flatness(a, layer, data), relative_flatness(b, layer, data)) < TOL, layer
    assert rel_err(flatness_penalty(a, ['out'], data).item(), flatness_penalty(b, ['out'], data).item()) < TOL
    with pytest.raises(ValueError, match="applies its weight functionally"):   # training runs MHA as written: refused
        flatness_penalty(a, ['att.out_proj'], data)

def test_landscape(pair):
    from flatness_nb.landscape import directions, landscape
    a, b, data = pair
    da, db = directions(a, seed=4), directions(b, seed=4)
    la = landscape(a, data, da, torch.linspace(-1, 1, 5).tolist())
    lb = landscape(b, data, db, torch.linspace(-1, 1, 5).tolist())
    assert rel_err(torch.as_tensor(la.loss), torch.as_tensor(lb.loss)) < TOL

def test_split_and_hutchpp(pair):
    from flatness_nb.estimators import hutchpp_trace, split_trace
    a, b, data = pair
    ha, hb = hutchpp_trace(a, data, matvecs=12, seed=5), hutchpp_trace(b, data, matvecs=12, seed=5)
    assert rel_err(ha.value, hb.value) < TOL
    sa, sb = split_trace(a, data, seed=6), split_trace(b, data, seed=6)
    assert rel_err(sa.total.value, sb.total.value) < TOL and rel_err(sa.gauss_newton.value, sb.gauss_newton.value) < TOL

def test_density(pair):
    from flatness_nb.operators import HessianOperator
    from flatness_nb.spectrum import spectral_density
    a, b, data = pair
    da = spectral_density(HessianOperator(a, data), steps=12, probes=2, seed=7)
    db = spectral_density(HessianOperator(b, data), steps=12, probes=2, seed=7)
    assert rel_err(torch.as_tensor(da.nodes), torch.as_tensor(db.nodes)) < 1e-7

def test_trainer_step(pair):
    import copy
    from flatness_nb.training import FlatTrainer
    a0, b0, data = pair
    for method in ('base', 'sam', 'asam'):
        a, b = copy.deepcopy(a0), copy.deepcopy(b0)
        ta = FlatTrainer(a, torch.optim.SGD(a.parameters(), lr=0.1), method)
        tb = FlatTrainer(b, torch.optim.SGD(b.parameters(), lr=0.1), method)
        ta.step(data); tb.step(data)
        pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
        for n, p in pa.items(): assert rel_err(p.detach(), pb[NAMES.get(n, n)].detach()) < 1e-12, (method, n)

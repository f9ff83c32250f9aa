"Adversarial checks of the measures against independent float64 computations written here (H14's hunt)."
import functools
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call, hessian
from flatness_nb.flatness import relative_flatness
from flatness_nb.landscape import landscape, random_directions

DT = torch.float64


def by_hand(model, X, Y, d, c, lossf=F.cross_entropy):
    "E_emp(θ + c d) by functional_call."
    p0 = {n: v.detach() for n, v in model.named_parameters()}
    with torch.no_grad():
        out = functional_call(model, {n: p0[n] + c * d[n] for n in p0}, (X,))
        return lossf(out['logits'] if isinstance(out, dict) else out, Y).item()


def kappa_by_hand(model, lname, X, Y, lossf):
    "κ^φ_Tr = Σ_{s,s'} <w_s, w_s'> Tr H_{s,s'} from the dense Hessian of the mean loss in W."
    p0 = {n: v.detach() for n, v in model.named_parameters()}
    wn = lname + '.weight'
    def L(w):
        out = functional_call(model, {**p0, wn: w}, (X,))
        return lossf(out['logits'] if isinstance(out, dict) else out, Y)
    tr = torch.einsum('aibi->ab', hessian(L)(p0[wn]))
    return (p0[wn] @ p0[wn].T * tr).sum().item()


class TiedFirst(nn.Module):
    "The input layer's weight is tied to a later layer's (registered first under 'c.weight')."
    def __init__(self):
        super().__init__(); self.c, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.a.weight = self.c.weight
    def forward(self, x): return self.b(torch.tanh(self.c(torch.tanh(self.a(x)))))


class DictOut(nn.Module):
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return {'logits': self.m(x), 'h': x}


def _xy(n=20, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=DT), torch.randint(0, k, (n,), generator=g)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT).eval()


# ---- findings (each failed before its fix) ----

def test_landscape_tied_first_layer():
    "F1: the first-layer shortcut held a tied input weight fixed (0.012 off at c=-0.5)."
    torch.manual_seed(0); m = TiedFirst().to(DT).eval(); X, Y = _xy()
    d = random_directions(m, 1, seed=1)[0]
    got = landscape(m, (X, Y), [d], [-0.5, 0., 0.7], batch_size=7).loss
    want = torch.tensor([by_hand(m, X, Y, d, c) for c in (-0.5, 0., 0.7)], dtype=DT)
    assert (got - want).abs().max() < 1e-12, (got, want)


def test_landscape_weight_norm_first_layer():
    "Sweep (passed before too: a parametrized layer is a subclass, not an AFFINE_TYPE): weight norm."
    torch.manual_seed(0)
    m = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 5)), nn.Tanh(),
                      nn.Linear(5, 3)).to(DT).eval()
    X, Y = _xy(); d = random_directions(m, 1, seed=1)[0]
    got = landscape(m, (X, Y), [d], [-0.5, 0.7], batch_size=7).loss
    want = torch.tensor([by_hand(m, X, Y, d, c) for c in (-0.5, 0.7)], dtype=DT)
    assert (got - want).abs().max() < 1e-12, (got, want)


def test_landscape_dict_logits_model():
    "F2: a model returning {'logits': ...} raised AttributeError in landscape; now its numbers."
    m = DictOut(mlp()); X, Y = _xy(); d = random_directions(m, 1, seed=1)[0]
    got = landscape(m, (X, Y), [d], [-0.5, 0., 0.7], batch_size=7).loss
    want = torch.tensor([by_hand(m, X, Y, d, c) for c in (-0.5, 0., 0.7)], dtype=DT)
    assert (got - want).abs().max() < 1e-12, (got, want)


def test_landscape_half_model_float32_copy():
    "F3: a float16 model's landscape was computed and returned in float16 (centre 1e-3 off E_emp), no warning."
    import copy, warnings
    from flatness_nb.core import empirical_risk
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).eval().half()
    g = torch.Generator().manual_seed(0)
    X, Y = torch.randn(600, 4, generator=g).half(), torch.randint(0, 3, (600,), generator=g)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        got = landscape(m, (X, Y), random_directions(m, 1, seed=1), [0.], batch_size=128).loss
        want = empirical_risk(m, (X, Y))
    assert got.dtype == torch.float32 and abs(got.item() - want) < 1e-6, (got, want)
    assert any('float32 copy' in str(x.message) for x in w)


def kappa_dense(model, lname, X, Y, lossf):
    "κ of a (possibly non-mean) batch loss lossf in one layer's weight, dense."
    p0 = {n: v.detach() for n, v in model.named_parameters()}
    wn = lname + '.weight'; W = p0[wn]
    H = hessian(lambda w: lossf(functional_call(model, {**p0, wn: w}, (X,)), Y))(W)
    return (W @ W.T * torch.einsum('aibi->ab', H)).sum().item()


def test_penalty_class_weights_mean_refused():
    "F4: flatness_penalty with CrossEntropyLoss(weight=w) returned the unweighted κ (0.339 vs 0.345)."
    from flatness_nb.training import flatness_penalty
    m = mlp(1); X, Y = _xy(12, seed=3)
    w = torch.tensor([0.6, 1.3, 0.9], dtype=DT)
    lf = nn.CrossEntropyLoss(weight=w)
    with pytest.raises(ValueError, match="class weights with reduction='mean'"):
        flatness_penalty(m, '2', (X, Y), lf)
    # the way out named by the message: reduction='sum' is κ of (1/B) Σ w_y ℓ
    got = flatness_penalty(m, '2', (X, Y), nn.CrossEntropyLoss(weight=w, reduction='sum')).item()
    want = kappa_dense(m, '2', X, Y, lambda o, y: F.cross_entropy(o, y, weight=w, reduction='sum') / len(y))
    assert abs(got - want) < 1e-12 * abs(want)


# ---- a compact sweep of cases that passed (each against a computation written here) ----

_W = torch.tensor([0.6, 1.3, 0.9], dtype=DT)
LOSSES = {   # name: (library loss, the same E_emp by hand, targets)
    'ce': (F.cross_entropy, F.cross_entropy, 'y'),
    'ce_smooth': (nn.CrossEntropyLoss(label_smoothing=0.2), lambda o, y: F.cross_entropy(o, y, label_smoothing=0.2), 'y'),
    'ce_sum': (nn.CrossEntropyLoss(reduction='sum'), lambda o, y: F.cross_entropy(o, y, reduction='sum') / len(y), 'y'),
    'ce_w_sum': (functools.partial(F.cross_entropy, weight=_W, reduction='sum'),
                 lambda o, y: F.cross_entropy(o, y, weight=_W, reduction='sum') / len(y), 'y'),
    'mse': (F.mse_loss, F.mse_loss, 'f'),
    'mse_sum': (nn.MSELoss(reduction='sum'), lambda o, y: F.mse_loss(o, y, reduction='sum') / len(y), 'f'),
    'huber': (nn.HuberLoss(delta=0.3), lambda o, y: F.huber_loss(o, y, delta=0.3), 'f'),
    'bce': (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, 'b'),
}


def _targets(kind, n=20):
    g = torch.Generator().manual_seed(5)
    if kind == 'y': return torch.randint(0, 3, (n,), generator=g)
    t = torch.randn(n, 3, generator=g, dtype=DT)
    return t if kind == 'f' else (t > 0).to(DT)


@pytest.mark.parametrize('loss', list(LOSSES))
def test_sweep_kappa_and_landscape_centre(loss):
    lf, hand, kind = LOSSES[loss]
    m = mlp(2); X, _ = _xy(); Y = _targets(kind)
    k = relative_flatness(m, '2', (X, Y), lf, batch_size=7)
    want = kappa_by_hand(m, '2', X, Y, hand)
    assert abs(k - want) <= 1e-12 * abs(want)
    d = random_directions(m, 1, seed=1)[0]
    got = landscape(m, (X, Y), [d], [0., 0.5], lf, batch_size=7).loss
    assert abs(got[0].item() - by_hand(m, X, Y, d, 0., hand)) < 1e-13
    assert abs(got[1].item() - by_hand(m, X, Y, d, 0.5, hand)) < 1e-13


@pytest.mark.parametrize('method', ['base', 'sam', 'asam', 'flat', 'sam+flat'])
def test_sweep_trainer_step_by_hand(method):
    "One FlatTrainer step (SGD; a frozen bias; LayerNorm) equals a step written with torch.func."
    from torch.func import grad
    from flatness_nb.training import FlatTrainer
    X, Y = _xy(10, seed=4)
    def make():
        torch.manual_seed(1)
        m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.LayerNorm(6), nn.Linear(6, 3)).to(DT)
        m[0].bias.requires_grad_(False); return m
    lr, rho, eta, lam = 0.1, 0.05, 0.01, 0.3 if 'flat' in method else 0.
    m, ref = make(), make()
    FlatTrainer(m, torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=lr), method,
                rho=rho, eta=eta, lam=lam, layers='3').step((X, Y))
    p0 = {n: v.detach() for n, v in ref.named_parameters()}
    tn = [n for n, v in ref.named_parameters() if v.requires_grad]
    L = lambda p: F.cross_entropy(functional_call(ref, p, (X,)), Y)
    g = grad(L)(p0)
    if 'sam' in method:
        T = {n: p0[n].abs() + eta if method == 'asam' and n.endswith('weight') else 1. for n in tn}
        nrm = torch.sqrt(sum(((T[n] * g[n]) ** 2).sum() for n in tn))
        g = grad(L)({n: p0[n] + (rho * T[n] ** 2 * g[n] / nrm if n in tn else 0) for n in p0})
    def kap(p):
        W = p['3.weight']
        H = hessian(lambda w: F.cross_entropy(functional_call(ref, {**p, '3.weight': w}, (X,)), Y))(W)
        return (W @ W.T * torch.einsum('aibi->ab', H)).sum()
    gk = grad(kap)(p0) if lam else {n: 0. for n in p0}
    for n, v in m.named_parameters():
        want = p0[n] - lr * (g[n] + lam * gk[n]) if n in tn else p0[n]
        assert (v.detach() - want).abs().max() < 1e-13, (method, n)


@pytest.mark.parametrize('conv,shape', [
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (4, 9)),
    (lambda: nn.Conv2d(2, 4, (2, 3), stride=(3, 1), padding=(1, 0)), (2, 7, 6)),
    (lambda: nn.Conv3d(2, 3, 2, stride=2, padding=1), (2, 4, 5, 3)),
])
def test_sweep_conv_operator_norm_dense(conv, shape):
    from torch.func import jacrev
    from flatness_nb.compression import layer_operator_norm
    torch.manual_seed(0); c = conv().to(DT); nd = len(shape) - 1
    f = lambda v: getattr(F, f'conv{nd}d')(v.reshape(1, *shape), c.weight, None, c.stride, c.padding,
                                          c.dilation, c.groups).reshape(-1)
    J = jacrev(f)(torch.zeros(torch.Size(shape).numel(), dtype=DT))
    want = torch.linalg.matrix_norm(J, 2).item()
    assert abs(layer_operator_norm(c, shape) - want) < 1e-10 * want


def test_feature_spread_float32_far_from_zero():
    "F6: float32 features of mean 300 and spread 0.01-0.03: E[φ²] − μ² cancelled (std [0, 0.088, 0])."
    from flatness_nb.flatness import feature_spread
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).float().eval()
    with torch.no_grad(): m[0].weight.mul_(0.05); m[0].bias.fill_(300.)
    X = torch.randn(4000, 4, generator=torch.Generator().manual_seed(0))
    sd = feature_spread(m, '2', (X, torch.zeros(4000, dtype=torch.long)))
    true = torch.relu(m[0](X)).detach().double().std(0)
    assert sd.dtype == torch.float32 and ((sd.double() - true).abs() / true).max() < 1e-3, (sd, true)


def test_true_risk_stderr_float32_nearly_constant_losses():
    "F7: float32 losses 8.0007 ± 9e-5: the standard error cancelled (7.5e-06 for a true 6.3e-07)."
    import math
    from flatness_nb.representativeness import true_risk
    torch.manual_seed(0); m = nn.Linear(4, 3).float().eval()
    with torch.no_grad(): m.weight.mul_(1e-4); m.bias.copy_(torch.tensor([8., 0., 0.]))
    X = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0)); Y = torch.ones(20000, dtype=torch.long)
    l = F.cross_entropy(m(X), Y, reduction='none').detach().double()
    r = true_risk(m, (X, Y))
    assert abs(r.stderr / (l.std() / math.sqrt(len(l))).item() - 1) < 1e-3, r


def test_log_volume_rank_float32_bottleneck():
    "F8: a float32 net with a width-3 bottleneck: rounding-level σ counted (rank 7.66, LVR -86.5 vs 3, -3.11)."
    import copy
    from flatness_nb.compression import compression_measures
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 3), nn.Tanh(), nn.Linear(3, 10)).float().eval()
    X = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)); Y = torch.zeros(50, dtype=torch.long)
    c32 = compression_measures(m, (X, Y))
    c64 = compression_measures(copy.deepcopy(m).double(), (X.double(), Y))
    assert c32.rank == c64.rank == 3.0, (c32, c64)
    assert abs(c32.lvr - c64.lvr) < 1e-4 and abs(c32.nvr - c64.nvr) < 1e-4, (c32, c64)


def test_prop2_radii_many_features():
    "F9: m ≥ ~400 features at σ = 0.5: P(m/2, T) underflowed and every radius was 0 (true E[r] ≈ 0.0999 for δ = 0.1)."
    mpmath = pytest.importorskip("mpmath")
    from flatness_nb.robustness import prop2_radii
    d, s, m = 0.1, 0.5, 1000
    r = prop2_radii(3000, m, d, s, generator=torch.Generator().manual_seed(0), dtype=DT)
    f = lambda x: x ** (m - 1) * mpmath.e ** (-x ** 2 / (2 * d * d * s * s))
    Z = mpmath.quad(f, [0, d])
    Er = float(mpmath.quad(lambda x: x * f(x), [0, d]) / Z)
    Er2 = float(mpmath.quad(lambda x: x * x * f(x), [0, d]) / Z)
    se = (Er2 - Er ** 2) ** 0.5 / 3000 ** 0.5
    assert abs(r.mean().item() - Er) < 5 * se, (r.mean().item(), Er, se)

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

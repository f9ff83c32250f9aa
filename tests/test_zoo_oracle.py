"""Acceptance tests of the exact engine on small widths of the zoo's architectures, in float64: every exact layer's
trace, κ^φ_Tr, diagonal, column terms ρ and bias Hessian against the dense autograd oracle, and the whole-network
trace against the sum of the dense oracle's per-parameter blocks. Models are in eval mode with random BatchNorm
running statistics and affine parameters, random biases, and the zoo's in-place ReLU."""
import copy, pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vjp, vmap
from flatness_nb.zoo import ResNet18, SmallViT
from flatness_nb.core import linear_layers, param_name, layer_adapter
from flatness_nb.hessian import layer_curvature, layer_dense_hessian, dense_hessian, network_hessian_trace, hvp
from flatness_nb.testing import rel_err, ORACLE_CASES, build_case, oracle_errors, randomise

TOL = 1e-9          # relative error allowed against the dense oracle
DT = torch.float64
MAX_DENSE = 12_000  # largest parameter block given to the dense oracle (LeNet5's fc1, 48,000 weights, is not)
ZOO = [c for c in ORACLE_CASES if 'zoo' in c.tags]     # every layer of ≤ MAX_DENSE weights of four zoo models

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

class Case:
    "A zoo model and its data (those of its oracle cases), with the dense oracle's block traces, shared by the tests."
    def __init__(self, key):
        self.model, _, X, y, _ = build_case(next(c for c in ZOO if c.name.startswith(key + '/')))
        self.data, self.layers = (X, y), linear_layers(self.model)
        self._tr = {}   # parameter name → trace of its dense block (only traces are kept: LeNet5 fc2's block alone is 0.8 GB)
    def layer_H(self, name):
        "Dense Hessian of one layer's weight in the adapter's (d, m) order; its trace is remembered."
        H = layer_dense_hessian(self.model, name, self.data, max_size=MAX_DENSE)
        self._tr[param_name(name)] = H.trace().item()
        return H
    def block_trace(self, pname):
        "Trace of the dense Hessian block of one parameter."
        if pname not in self._tr:
            self._tr[pname] = dense_hessian(self.model, self.data, params=[pname], max_size=MAX_DENSE).trace().item()
        return self._tr[pname]

_cases = {}
def case(key):
    if key not in _cases: _cases[key] = Case(key)
    return _cases[key]

def bias_oracle(c, name):
    "Dense Hessian w.r.t. the layer's bias; for a bias-free layer, w.r.t. a zero bias added to a copy (what the engine reports)."
    model, mod = c.model, c.layers[name]
    if mod.bias is None:
        model = copy.deepcopy(model); mod = model.get_submodule(name)
        mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0], dtype=DT))
    return dense_hessian(model, c.data, params=[param_name(name, 'bias')])

def test_zoo_cases_are_every_small_layer():
    "The zoo cases list, per model, exactly the layers of at most MAX_DENSE weights (four or more each)."
    for key in {o.name.split('/')[0] for o in ZOO}:
        small = [nm for nm, mod in case(key).layers.items() if mod.weight.numel() <= MAX_DENSE]
        assert len(small) >= 4 and sorted(small) == sorted(o.layer for o in ZOO if o.name.startswith(key + '/')), key

@pytest.mark.parametrize('oc', ZOO, ids=lambda o: o.name)
def test_layer_equals_dense_oracle(oc):
    c = case(oc.name.split('/')[0])
    lc = layer_curvature(c.model, oc.layer, c.data)
    e = oracle_errors(oc, c.layer_H(oc.layer), lc, bias_oracle(c, oc.layer))
    assert set(e) == {'trace', 'kappa', 'block_traces', 'diagonal', 'rho', 'bias'}
    bad = {q: f'{v:.1e}' for q, v in e.items() if not v <= TOL}
    assert not bad, f"{oc.name} (route {lc.route}): off the dense oracle by more than {TOL}: {bad}"

def hvp_columns(c, name, cols):
    "Oracle columns H[:, (b, j)] of one layer's weight Hessian for every row b and the given columns j, by autograd HVPs: (J, d, d, m)."
    mod = c.layers[name]; ad = layer_adapter(mod); pn = param_name(name)
    ps = {k: v.detach() for k, v in c.model.named_parameters()}
    X, y = c.data
    def L(w): return F.cross_entropy(functional_call(c.model, {**ps, pn: ad.unmatrix(mod, w)}, (X,)), y)
    W = ad.matrix(mod, ps[pn]); d, m = W.shape
    E = torch.zeros(len(cols), d, d, m, dtype=DT)
    for i, j in enumerate(cols): E[i, torch.arange(d), torch.arange(d), j] = 1
    HE = vmap(lambda v: jvp(grad(L), (W,), (v,))[1])(E.reshape(-1, d, m))
    return W, HE.reshape(len(cols), d, d, m)

def test_lenet5_fc1_columns():
    "fc1 (48,000 weights) is beyond the dense oracle in this time budget: its diagonal and ρ(j) on 6 random columns j instead."
    c = case('lenet5')
    cols = torch.randperm(400, generator=torch.Generator().manual_seed(2))[:6].tolist()
    W, HE = hvp_columns(c, 'fc1', cols)                     # HE[i, b, a, t] = H[(a, t), (b, cols[i])]
    lc = layer_curvature(c.model, 'fc1', c.data)
    j = torch.tensor(cols); i = torch.arange(len(cols)); d = W.shape[0]
    diag = HE[i[:, None], torch.arange(d), torch.arange(d), j[:, None]]       # (J, d): H[(a, j), (a, j)]
    Hjj = HE[i, :, :, j]                                                          # (J, b, a): H[(a, j), (b, j)]
    rho = torch.einsum('ja,jba,jb->j', W[:, j].T, Hjj, W[:, j].T)
    assert rel_err(lc.diagonal[:, j].T, diag) <= TOL, rel_err(lc.diagonal[:, j].T, diag)
    assert rel_err(lc.rho[j], rho) <= TOL, rel_err(lc.rho[j], rho)

@pytest.mark.parametrize('key', ['resnet18_w3', 'vgg11_w2', 'vit_tiny'])
def test_network_trace_equals_dense_oracle(key):
    "Exact (stderr 0): within 1e-9; with a Hutchinson part (attention projections, parameters after a smooth op): within 4 stderr."
    c = case(key)
    est = network_hessian_trace(c.model, c.data)
    ref = sum(c.block_trace(k) for k, _ in c.model.named_parameters())
    if est.stderr == 0: assert rel_err(est.value, ref) <= TOL, (est, ref)
    else: assert abs(est.value - ref) <= 4 * est.stderr, f"{key}: {est} vs dense {ref:.6g}: {abs(est.value - ref) / est.stderr:.1f} stderr"
    expect_exact = key != 'vit_tiny'      # the sweep covers conv/linear layers and eval BatchNorm; the ViT's attention needs Hutchinson
    assert (est.stderr == 0) == expect_exact, est

def gauss_newton_products(model, pname, X, y, V):
    "G v = Jᵀ H^ℓ J v / n for each direction v (cross-entropy), with J = ∂f/∂w by torch.func jvp and vjp."
    w0 = dict(model.named_parameters())[pname].detach()
    f = lambda w: functional_call(model, {pname: w}, (X,))
    out, back = vjp(f, w0)
    p = out.softmax(-1)
    def one(v):
        Jv = jvp(f, (w0,), (v,))[1]
        return back((p * Jv - p * (p * Jv).sum(-1, keepdim=True)) / len(X))[0]   # H^ℓ = diag(p) − p pᵀ per sample
    return torch.stack([one(v) for v in V])

def test_full_resnet18_hessian_blocks_are_gauss_newton():
    "Full-size ResNet-18 (11.7M parameters, 32×32 inputs, float64): a layer's Hessian block times v equals its Gauss–Newton product."
    model = randomise(ResNet18(num_classes=1000))
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(4, 3, 32, 32, generator=g, dtype=DT), torch.randint(0, 1000, (4,), generator=g)
    errs = {}
    for layer in ['conv1', 'layer1.0.conv1', 'layer4.1.conv2', 'fc']:
        pn = param_name(layer); w = dict(model.named_parameters())[pn]
        V = torch.randn(3, *w.shape, generator=g, dtype=DT)
        Hv = hvp(model, (X, y), F.cross_entropy, {pn: V})[pn]
        Gv = gauss_newton_products(model, pn, X, y, V)
        assert Hv.norm() > 0
        errs[layer] = max(rel_err(Hv[i], Gv[i]) for i in range(len(V)))
    assert max(errs.values()) <= 1e-12, errs

def test_gauss_newton_identity_fails_on_a_smooth_network():
    "The control: behind GELU, LayerNorm and attention a layer's Hessian block is not its Gauss–Newton block."
    model = randomise(SmallViT(num_classes=3, image_size=8, patch=4, dim=8, depth=1, heads=2, mlp=12))
    g = torch.Generator().manual_seed(4)
    X, y = torch.randn(4, 3, 8, 8, generator=g, dtype=DT), torch.randint(0, 3, (4,), generator=g)
    pn = 'blocks.0.fc1.weight'; V = torch.randn(2, 12, 8, generator=g, dtype=DT)
    Hv, Gv = hvp(model, (X, y), F.cross_entropy, {pn: V})[pn], gauss_newton_products(model, pn, X, y, V)
    assert rel_err(Hv, Gv) > 1e-3, rel_err(Hv, Gv)

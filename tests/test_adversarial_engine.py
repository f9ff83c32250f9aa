"Adversarial models against the curvature engine: each result exact (≤ 1e-8 against an independent torch.func Hessian, float64) or a clear refusal."
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call, jacrev
from torch.utils.data import DataLoader, TensorDataset
from flatness_nb.core import Inputs, exact_attention
from flatness_nb.sweep import network_curvature
from flatness_nb.hessian import layer_curvature, network_hessian_trace, dense_hessian

TOL = 1e-8

@pytest.fixture(autouse=True)
def f64():
    old = torch.get_default_dtype(); torch.set_default_dtype(torch.float64); torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)

def _x(x): return x if isinstance(x, tuple) else (x,)

def oracle(model, x, y, loss):
    "{parameter: (trace, diagonal)} of the Hessian of loss(model(x), y), by jacrev∘jacrev (not the library's oracle)."
    ps = {n: p.detach().clone() for n, p in model.named_parameters()}
    kw = x if isinstance(x, dict) else {}
    def L(p):
        with exact_attention(): out = functional_call(model, {**p, **dict(model.named_buffers())}, () if kw else _x(x), kw)
        return loss(out['logits'] if isinstance(out, dict) else out, y)
    with exact_attention(): H = jacrev(jacrev(L))(ps)
    return {n: torch.diagonal(H[n][n].reshape(ps[n].numel(), -1)).reshape(ps[n].shape) for n in ps}

def rel(a, b): return (torch.as_tensor(a) - b).abs().max().item() / max(b.abs().max().item(), 1e-12)

def assert_exact(model, data, x, y, loss, lib_loss=None, layer=None, batch_size=512):
    "Every block the sweep covers (trace and diagonal) and one layer's trace equal the oracle; returns the sweep."
    model.eval(); O, lib_loss = oracle(model, x, y, loss), lib_loss or loss
    nc = network_curvature(model, data, lib_loss, want=('trace', 'diagonal'), batch_size=batch_size)
    assert nc.traces, "nothing covered"
    for p, t in nc.traces.items():
        assert rel(t, O[p].sum()) < TOL, (p, t, O[p].sum().item())
        assert rel(nc.diagonals[p], O[p]) < TOL, p
    if layer is not None:
        t = layer_curvature(model, layer, data, lib_loss, want=('trace',), batch_size=batch_size).trace
        assert rel(t, O[layer + '.weight'].sum()) < TOL, (layer, t, O[layer + '.weight'].sum().item())
    return nc

# --- findings: each failed before its fix -------------------------------------------------------------------------

def test_eval_batchnorm1d_on_flat_features():
    "Finding 1: an eval BatchNorm1d on (B, C) features crashed in einsum (Tensor.sum(()) summed every axis)."
    m = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    m.train(); m(torch.randn(20, 4)); m[1].weight.data.uniform_(0.5, 2); m[1].bias.data.normal_()
    X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    nc = assert_exact(m, (X, y), X, y, F.cross_entropy, layer='0')
    assert {'1.weight', '1.bias'} <= set(nc.traces)

def _hardswish_outliers_first():
    m = nn.Sequential(nn.Linear(4, 5), nn.Hardswish(), nn.Linear(5, 3)).eval()
    X, y = torch.randn(8, 4), torch.randint(0, 3, (8,)); X[:4] *= 1e4    # the plan's 4 check samples: linear part
    return m, X, y

def test_curved_range_missed_by_plan_samples_refused():
    "Finding 2: Hardswish curved only on samples after the plan's 4 check samples: was the GN block, silently (−0.7 %)."
    m, X, y = _hardswish_outliers_first()
    for f in (lambda: network_curvature(m, (X, y)), lambda: layer_curvature(m, '0', (X, y)),
              lambda: network_hessian_trace(m, (X, y))):
        with pytest.raises(ValueError, match=r"a smooth operation follows modules \['0'\]"): f()
    t = layer_curvature(m, '0', (X, y), route='full', want=('trace',)).trace   # the way out the message names
    assert rel(t, oracle(m, X, y, F.cross_entropy)['0.weight'].sum()) < TOL

class DataBranch(nn.Module):
    "tanh only on batches of small inputs: the forward pass branches on the data."
    def __init__(s): super().__init__(); s.a = nn.Linear(4, 5); s.b = nn.Linear(5, 3)
    def forward(s, x):
        h = s.a(x)
        if x.abs().max() < 50: h = torch.tanh(h)
        return s.b(torch.relu(h))

def test_data_dependent_branch_between_batches_refused():
    "Finding 3: a smooth op on batch 2 only: the plan from batch 1 gave Tr 0.3215 vs the oracle's 0.0256, silently."
    m = DataBranch().eval(); X, y = torch.randn(8, 4), torch.randint(0, 3, (8,)); X[:4] *= 100
    dl = DataLoader(TensorDataset(X, y), batch_size=4)
    with pytest.raises(ValueError, match=r"a smooth operation follows modules \['a'\]"): network_curvature(m, dl)
    with pytest.raises(ValueError, match="a smooth operation follows"): layer_curvature(m, 'a', dl)

def test_gauss_newton_mode_does_not_check_smoothness():
    "curvature='gauss_newton' wants G, which ignores the head's curvature: no refusal there."
    m, X, y = _hardswish_outliers_first()
    assert '0.weight' in network_curvature(m, (X, y), curvature='gauss_newton').traces

# --- the sweep of cases tried that were already exact (or refused clearly) --------------------------------------

class Two(nn.Module):
    "Linear → ReLU → Linear with a configurable middle (in-place ops, norms, skip, branches)."
    def __init__(s, mid='relu'):
        super().__init__(); s.mid = mid; s.a = nn.Linear(4, 5); s.b = nn.Linear(5, 3); s.c = nn.Linear(5, 3)
        s.n = {'ln': nn.LayerNorm(5), 'gn': nn.GroupNorm(1, 5)}.get(mid, nn.Identity())
    def forward(s, x):
        h = s.a(x)
        if s.mid == 'inplace_relu': h.mul_(2.0); h.relu_(); return s.b(h)
        if s.mid == 'inplace_tanh': h.tanh_(); return s.b(h)
        if s.mid == 'branch_skip': return s.b(torch.relu(h)) + s.c(h) + h[:, :3]
        if s.mid == 'dict': return {'logits': s.b(torch.relu(h))}
        return s.b(torch.relu(s.n(h)))

class Attn(nn.Module):
    def __init__(s, mode, bf=True):
        super().__init__(); s.mode = mode; s.m = nn.MultiheadAttention(4, 2, batch_first=bf); s.h = nn.Linear(4, 3)
    def forward(s, x):
        xx = x if s.m.batch_first else x.transpose(0, 1)
        kw = {'kpm': dict(key_padding_mask=torch.arange(4).expand(len(x), 4) > 2),
              'causal': dict(attn_mask=torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)),
              'weights': dict(need_weights=True, average_attn_weights=False)}.get(s.mode, {})
        o = s.m(xx, xx, xx, **kw)[0]
        return s.h((o if s.m.batch_first else o.transpose(0, 1)).mean(1))

class Tok(nn.Module):
    def __init__(s): super().__init__(); s.e = nn.Embedding(5, 4, padding_idx=0); s.h = nn.Linear(4, 5)
    def forward(s, x): return s.h(torch.relu(s.e(x)))

class Kw(nn.Module):
    def __init__(s): super().__init__(); s.e = nn.Embedding(6, 4, padding_idx=0); s.a = nn.Linear(4, 5); s.h = nn.Linear(5, 3)
    def forward(s, input_ids, attention_mask):
        h, m = torch.relu(s.a(s.e(input_ids))), attention_mask.unsqueeze(-1).to(torch.get_default_dtype())
        return s.h((h * m).sum(1) / m.sum(1))

def _conv(**kw):
    m = nn.Sequential(nn.Conv1d(4, 4, 3, **kw), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)); m(torch.randn(1, 4, 7)); return m

def _case(name):
    "(model, data, x, y, oracle loss, library loss, layer) for one case."
    X, y, ce = torch.randn(6, 4), torch.randint(0, 3, (6,)), F.cross_entropy
    S, ys = torch.randn(3, 4, 4), torch.randint(0, 3, (3,))
    if name in ('inplace_relu', 'inplace_tanh', 'branch_skip', 'ln', 'gn', 'dict'): return Two(name), (X, y), X, y, ce, ce, 'a'
    if name == 'frozen':
        m = Two(); m.a.weight.requires_grad_(False); return m, (X, y), X, y, ce, ce, 'a'
    if name == 'dataloader_uneven':
        X, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
        return Two(), DataLoader(TensorDataset(X, y), batch_size=3), X, y, ce, ce, 'a'
    if name.startswith('mha_'): return Attn(name[4:], bf=name != 'mha_seqfirst'), (S, ys), S, ys, ce, ce, 'h'
    if name.startswith('conv_'):
        kw = {'conv_circular': dict(padding=1, padding_mode='circular'), 'conv_dilation': dict(dilation=2, padding=2)}[name]
        C, yc = torch.randn(3, 4, 7), torch.randint(0, 3, (3,)); return _conv(**kw), (C, yc), C, yc, ce, ce, '0'
    if name == 'token_loss_ignore':
        t, yt = torch.randint(0, 5, (3, 4)), torch.randint(0, 5, (3, 4)); yt[0, 1:] = -100; yt[2, 0] = -100
        tl = lambda o, u: F.cross_entropy(o.reshape(-1, 5), u.reshape(-1))          # mean over the kept tokens
        return Tok(), (t, yt), t, yt, tl, ce, 'h'
    if name == 'soft_labels':
        ps = torch.softmax(torch.randn(6, 3), 1); return Two(), (X, ps), X, ps, ce, ce, 'a'
    if name == 'label_smoothing':
        ls = lambda o, u: F.cross_entropy(o, u, label_smoothing=0.2)
        return Two(), (X, y), X, y, ls, nn.CrossEntropyLoss(label_smoothing=0.2), 'a'
    if name == 'reduction_sum':
        return Two(), (X, y), X, y, lambda o, u: F.cross_entropy(o, u, reduction='sum') / len(u), nn.CrossEntropyLoss(reduction='sum'), 'a'
    if name == 'bce_pos_weight':
        pw, yb = torch.tensor([1., 2., 3.]), torch.randint(0, 2, (6, 3)).double()
        return Two(), (X, yb), X, yb, lambda o, u: F.binary_cross_entropy_with_logits(o, u, pos_weight=pw), nn.BCEWithLogitsLoss(pos_weight=pw), 'a'
    if name == 'huber':
        yr = 3 * torch.randn(6, 3); return Two(), (X, yr), X, yr, lambda o, u: F.huber_loss(o, u, delta=2.5), nn.HuberLoss(delta=2.5), 'a'
    if name in ('keyword_inputs', 'keyword_batches'):
        ids, am = torch.randint(1, 6, (3, 4)), torch.ones(3, 4, dtype=torch.long); ids[0, 2:] = 0; am[0, 2:] = 0
        kw = dict(input_ids=ids, attention_mask=am)
        data = (Inputs(kwargs=kw), ys) if name == 'keyword_inputs' else \
               [(dict(input_ids=ids[:2], attention_mask=am[:2]), ys[:2]), (dict(input_ids=ids[2:], attention_mask=am[2:]), ys[2:])]
        return Kw(), data, kw, ys, ce, ce, 'a'
    raise KeyError(name)

CASES = ['inplace_relu', 'inplace_tanh', 'branch_skip', 'ln', 'gn', 'dict', 'frozen', 'dataloader_uneven', 'mha_self',
         'mha_seqfirst', 'mha_kpm', 'mha_causal', 'mha_weights', 'conv_circular', 'conv_dilation', 'token_loss_ignore',
         'soft_labels', 'label_smoothing', 'reduction_sum', 'bce_pos_weight', 'huber', 'keyword_inputs', 'keyword_batches']

@pytest.mark.parametrize('name', CASES)
def test_exact_cases(name):
    m, data, x, y, loss, lib, layer = _case(name)
    assert_exact(m, data, x, y, loss, lib, layer, batch_size=2 if name == 'keyword_inputs' else 512)

def _twice():
    class T(nn.Module):
        def __init__(s): super().__init__(); s.a = nn.Linear(4, 4); s.c = nn.Linear(4, 3)
        def forward(s, x): return s.c(torch.relu(s.a(torch.relu(s.a(x)))))
    return T()

def _shared(twice=False):
    "b and c hold the same weight Parameter; with twice=True also a runs twice, so no module is left to cover."
    m = Two(); m.c.weight = m.b.weight
    m.forward = lambda x: m.b(torch.relu(m.a(x))) + m.c(torch.relu(m.a(x) if twice else x @ torch.ones(4, 5)))
    return m

def test_nothing_covered_falls_back():
    "Finding 4: with no module left to cover, the sweep crashed ('inputs argument to grad() cannot be empty'), and "
    "network_hessian_trace with it; now the sweep returns no traces and the estimate is all Hutchinson."
    X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    m = _shared(twice=True).eval(); nc = network_curvature(m, (X, y))
    assert nc.traces == {} and {n for n, _ in m.named_parameters()} <= set(nc.rest)
    e = network_hessian_trace(m, (X, y), max_probes=64)
    tot = sum(v.sum() for v in oracle(m, X, y, F.cross_entropy).values()).item()
    assert e.n > 0 and abs(e.value - tot) < 5 * e.stderr

def test_refused_or_left_out_clearly():
    "Modules the sweep cannot factor are left out with the reason (and layer_curvature refuses them); the rest stays exact."
    X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    m = _twice().eval(); nc = assert_exact(m, (X, y), X, y, F.cross_entropy)
    assert 'runs 2 times' in nc.rest['a.weight']
    with pytest.raises(ValueError, match='called 2 times'): layer_curvature(m, 'a', (X, y))
    m = _shared().eval(); nc = assert_exact(m, (X, y), X, y, F.cross_entropy)
    assert 'shared with another module' in nc.rest['b.weight']
    m = Two().eval(); w = torch.tensor([0.5, 2.0, 1.0])
    with pytest.raises(ValueError, match='class weights'): network_curvature(m, (X, y), nn.CrossEntropyLoss(weight=w))
    with pytest.raises(ValueError, match='ignore_index'): network_curvature(m, (X, torch.where(y == 1, -100, y)))

def test_lambda_max_unconverged_says_so():
    "Finding 5: lambda_max returned the top Ritz value after `iters` steps without a word when Lanczos had not converged "
    "(iters=3 on a 261-parameter tanh MLP: 0.3526 vs λ_max 0.4578); now a RuntimeWarning naming iters."
    from flatness_nb.hessian import lambda_max
    X, y = torch.randn(64, 10), torch.randint(0, 5, (64,))
    m = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 5)).eval()
    top = torch.linalg.eigvalsh(dense_hessian(m, (X, y)))[-1].item()
    with pytest.warns(RuntimeWarning, match='raise iters'): low = lambda_max(m, (X, y), iters=3)
    assert low < top * (1 - 1e-3)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error'); assert abs(lambda_max(m, (X, y), iters=60) - top) < 1e-8 * top

def test_old_style_reparametrizations_left_out():
    "Finding 6: torch.nn.utils.weight_norm / spectral_norm (pre-hook API) crashed the sweep ('backward through the graph a "
    "second time'); now 'parametrized', left to Hutchinson, and layer_curvature refuses it."
    import warnings
    X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    for wrap in (torch.nn.utils.weight_norm, torch.nn.utils.spectral_norm):
        m = Two()
        with warnings.catch_warnings(): warnings.simplefilter('ignore'); wrap(m.a)
        m.eval(); nc = assert_exact(m, (X, y), X, y, F.cross_entropy)
        assert 'parametrized' in nc.rest['a.bias'] and {'b.weight', 'b.bias'} <= set(nc.traces)
        with pytest.raises(ValueError, match='parametrized'): layer_curvature(m, 'a', (X, y))

def test_prelu_left_out():
    "Finding 7: nn.PReLU after a layer crashed the sweep inside vmap (no batching rule for its backward); now left out."
    m = nn.Sequential(nn.Linear(4, 5), nn.PReLU(), nn.Linear(5, 3)).eval(); X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    nc = assert_exact(m, (X, y), X, y, F.cross_entropy, layer='0')
    assert 'cannot vmap' in nc.rest['1.weight']
    e = network_hessian_trace(m, (X, y))
    assert abs(e.value - sum(v.sum() for v in oracle(m, X, y, F.cross_entropy).values()).item()) < 1e-8 + 5 * e.stderr

def test_unknown_layers_refused():
    "Finding 8: network_curvature(layers=['nope']) returned trace 0 without a word (an empty plan); a str was read by "
    "substring. Now a ValueError naming the modules that hold parameters; one name as a str is one name."
    m = Two().eval(); X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with pytest.raises(ValueError, match=r"layers=\['nope'\] are not modules"): network_curvature(m, (X, y), layers=['nope'])
    with pytest.raises(ValueError, match="are not modules"): network_curvature(m, (X, y), layers=['n'])   # no own params
    assert set(network_curvature(m, (X, y), layers='a').traces) == {'a.weight', 'a.bias'}

def test_smooth_layer_used_elsewhere_goes_to_hutchinson():
    "Finding 9: network_hessian_trace refused the whole estimate when a smooth-headed layer's weight is also used outside "
    "its call (the full route's single-use refusal); now that layer goes to Hutchinson, as the sweep already said."
    class U(nn.Module):
        def __init__(s): super().__init__(); s.a = nn.Linear(4, 4); s.b = nn.Linear(4, 3)
        def forward(s, x): return s.b(torch.tanh(s.a(x)) + F.linear(x, s.a.weight))
    m = U().eval(); X, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    e = network_hessian_trace(m, (X, y), max_probes=256)
    tot = sum(v.sum() for v in oracle(m, X, y, F.cross_entropy).values()).item()
    assert e.n > 0 and abs(e.value - tot) < 5 * e.stderr

"""Input contracts (issue 12): each malformed input gives the exact number (checked against the dense oracle or the same
computation on well-formed input) or one error line that names the problem and the way out. One test per class."""
import functools, math
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from flatness_nb.core import SelectOutput, empirical_risk, iter_batches, linear_layers, param_name
from flatness_nb.hessian import (dense_hessian, hutchinson_relative_flatness, hutchinson_trace, lambda_max, lanczos_max,
                                 layer_curvature, layer_hessian_trace, layer_lambda_max, network_hessian_trace)
from oracles import plain_hessian   # torch alone: the independent oracle

torch.set_num_threads(1)

pytestmark = pytest.mark.usefixtures('float64')   # tests/conftest.py

def _data(n=12, m=5, k=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, m, generator=g), torch.randint(0, k, (n,), generator=g)

def _oracle_trace(model, layer, data, loss_fn=F.cross_entropy):
    return dense_hessian(model, data, loss_fn, [param_name(layer)]).trace().item()

def _rel(a, b): return abs(a - b) / max(abs(b), 1e-30)

def _mlp(act=nn.Tanh): return nn.Sequential(nn.Linear(5, 4), act(), nn.Linear(4, 3)).eval()

# --- the split assumes a pure forward pass -------------------------------------------------------------------------------
class _DivT(nn.Module):
    "Temperature applied in place to the last layer's output: the last layer is not the model output."
    def __init__(self): super().__init__(); self.a = nn.Linear(5, 4); self.b = nn.Linear(4, 3)
    def forward(self, x): return self.b(torch.tanh(self.a(x))).div_(2.0)

@pytest.mark.parametrize('make, layer', [(_DivT, 'b'), (_DivT, 'a'),
                                         (lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 3)), '0'),
                                         (lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.ReLU(inplace=True)), '2')])
def test_inplace_ops_after_the_layer_are_exact(make, layer):
    model, data = make().eval(), _data()
    c = layer_curvature(model, layer, data)
    assert c.route != 'last'                                       # the model output is not the layer's output any more
    assert _rel(c.trace, _oracle_trace(model, layer, data)) < 1e-9

def test_weight_tying_refused():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__(); self.emb = nn.Linear(5, 3, bias=False); self.head = nn.Linear(5, 3, bias=False)
            self.head.weight = self.emb.weight
        def forward(self, x): return self.head(torch.tanh(self.emb(x) @ torch.ones(3, 5)))
    with pytest.raises(ValueError, match=r"shares its weight with \['emb.weight'\] \(weight tying\).*untie it"):
        layer_hessian_trace(Tied().eval(), 'head', _data())

def test_functional_randomness_refused():
    class Rnd(nn.Module):
        def __init__(self): super().__init__(); self.a = nn.Linear(5, 4); self.b = nn.Linear(4, 3)
        def forward(self, x): return self.b(F.dropout(torch.tanh(self.a(x)), 0.5, training=True))
    for f in (lambda m, d: layer_hessian_trace(m, 'b', d), empirical_risk, hutchinson_trace):
        with pytest.raises(ValueError, match="different outputs on two calls.*deterministic"): f(Rnd().eval(), _data())

# --- a model that is itself a bare nn.Linear -----------------------------------------------------------------------------
def test_bare_linear_model():
    lin, data = nn.Linear(5, 3).eval(), _data()
    H = dense_hessian(lin, data)
    assert _rel(layer_hessian_trace(lin, '', data), _oracle_trace(lin, '', data)) < 1e-9
    e = network_hessian_trace(lin, data)                       # weight and bias both exact, each counted once
    assert e.n == 0 and _rel(e.value, H.trace().item()) < 1e-9
    lm = layer_lambda_max(lin, '', data)
    assert _rel(lm, torch.linalg.eigvalsh(dense_hessian(lin, data, params=['weight']))[-1].item()) < 1e-8
    kappa = layer_curvature(lin, lin, data).relative_flatness
    h = hutchinson_relative_flatness(lin, '', data, rtol=0.01)
    assert abs(h.value - kappa) < 4 * h.stderr

# --- loss semantics ------------------------------------------------------------------------------------------------------
def test_class_weights_refused_with_mean_and_exact_with_sum():
    model, (X, y) = _mlp(), _data(); w = torch.tensor([1., 2., 3.])
    for lf in (nn.CrossEntropyLoss(weight=w), functools.partial(F.cross_entropy, weight=w)):
        with pytest.raises(ValueError, match="class weights with reduction='mean'.*reduction='sum'"): empirical_risk(model, (X, y), lf)
    got = empirical_risk(model, (X, y), nn.CrossEntropyLoss(weight=w, reduction='sum'), batch_size=5)
    with torch.no_grad(): want = F.cross_entropy(model(X), y, weight=w, reduction='sum').item() / len(X)
    assert _rel(got, want) < 1e-12

def test_labels_checked_on_every_batch():
    model, (X, y) = _mlp(), _data()
    y2 = y.clone(); y2[7] = -100
    with pytest.raises(ValueError, match="ignore_index=-100.*drop them"): empirical_risk(model, (X, y2), batch_size=4)
    y3 = y.clone(); y3[9] = 5                                     # third batch only
    for f in (empirical_risk, hutchinson_trace, lambda m, d, **k: layer_hessian_trace(m, '0', d, **k),
              lambda m, d, **k: layer_hessian_trace(m, '2', d, **k)):   # last layer: the closed form never reads y
        with pytest.raises(ValueError, match=r"label 5 is not a class index in \[0, 3\)"): f(model, (X, y3), batch_size=4)
    Y = torch.randn(12, 3); Y[10, 1] = float('nan')
    with pytest.raises(ValueError, match="batch 3: labels contain NaN"): empirical_risk(model, (X, Y), nn.MSELoss(), batch_size=4)

def test_batch_loss_must_be_mean_or_sum_of_sample_losses():
    model, (X, y) = _mlp(), _data()
    odd = lambda out, t: F.cross_entropy(out, t) * len(out) ** 0.5
    with pytest.raises(ValueError, match="neither the mean.*nor the sum"): empirical_risk(model, (X, y), odd)

# --- data contract -------------------------------------------------------------------------------------------------------
def test_one_shot_iterators_refused_reiterables_exact():
    model, (X, y) = _mlp(), _data()
    gen = ((X[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4))
    with pytest.raises(TypeError, match="one-shot iterator.*a list of batches or a DataLoader"): network_hessian_trace(model, gen)
    ref = network_hessian_trace(model, (X, y))
    for d in ([(X[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)], DataLoader(TensorDataset(X, y), batch_size=5),
              TensorDataset(X, y)):
        got = network_hessian_trace(model, d)
        assert got.n == 0 and _rel(got.value, ref.value) < 1e-10

@pytest.mark.parametrize('data, bs, msg', [
    ([(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))] * 2, 4, "all 2 batches are empty"),
    (None, 0, "batch_size must be a positive integer, got 0"), (None, -3, "batch_size must be a positive integer, got -3"),
    (None, 2.5, "batch_size must be a positive integer")])
def test_empty_data_and_bad_batch_size(data, bs, msg):
    with pytest.raises(ValueError, match=msg): empirical_risk(_mlp(), data if data is not None else _data(), batch_size=bs)

def test_single_sample_dataset_refused():
    class DS(torch.utils.data.Dataset):
        def __len__(self): return 3
        def __getitem__(self, i): return torch.randn(5), 0
    with pytest.raises(TypeError, match="wrap it in DataLoader"): empirical_risk(_mlp(), DS())

def test_integer_inputs():
    X, y = _data()
    with pytest.raises(ValueError, match=r"inputs are torch.int64: convert them \(X.float\(\)\)"):
        empirical_risk(_mlp(), (X.long(), y))
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3)).eval()   # integer inputs it embeds: fine
    ids = torch.randint(0, 10, (12, 2))
    assert _rel(layer_hessian_trace(emb, '2', (ids, y)), _oracle_trace(emb, '2', (ids, y))) < 1e-9

def test_tuple_and_dict_outputs():
    class Tup(nn.Module):
        def __init__(self): super().__init__(); self.net = _mlp()
        def forward(self, x): return self.net(x), x
    class Dct(Tup):
        def forward(self, x): return {'logits': self.net(x), 'h': x}
    data = _data()
    for M, key in ((Tup, 0), (Dct, 'logits')):
        m = M().eval()
        if M is Tup:                                 # a tuple without 'logits': refused with the way out
            with pytest.raises(TypeError, match=r"returned a tuple, not a tensor.*SelectOutput\(model, 0\)"):
                layer_hessian_trace(m, 'net.0', data)
            with pytest.raises(TypeError, match="not a tensor"): empirical_risk(m, data)
        else:                                        # a dict with 'logits' is read through it, no wrapper
            assert _rel(layer_hessian_trace(m, 'net.0', data), layer_hessian_trace(m.net, '0', data)) < 1e-12
        w = SelectOutput(m, key)
        assert 'net.0' in linear_layers(w)                           # the user's own names ...
        for name in ('net.0', 'model.net.0', m.net[0]):              # ... and the prefixed one still accepted
            assert _rel(layer_hessian_trace(w, name, data), layer_hessian_trace(m.net, '0', data)) < 1e-12
        assert _rel(network_hessian_trace(w, data).value, network_hessian_trace(m.net, data).value) < 1e-12

# --- finite checks in the estimators -------------------------------------------------------------------------------------
def test_estimator_arguments_and_finiteness():
    model, data = _mlp(), _data()
    with pytest.raises(ValueError, match="max_probes must be a positive integer, got 0"): hutchinson_trace(model, data, max_probes=0)
    with pytest.raises(ValueError, match="probes_per_pass must be a positive integer"): hutchinson_trace(model, data, probes_per_pass=0)
    with pytest.raises(ValueError, match="iters must be a positive integer, got 0"): lambda_max(model, data, iters=0)
    with pytest.raises(ValueError, match="Hessian-vector product is NaN"): lanczos_max(lambda v: v * float('nan'), torch.ones(3))
    bad = _mlp(); bad[2].weight.data[0, 0] = float('inf')
    for f in (lambda_max, hutchinson_trace, network_hessian_trace, empirical_risk):
        with pytest.raises(ValueError, match=r"parameters contain NaN or inf: 2.weight"): f(bad, data)

# --- transformers --------------------------------------------------------------------------------------------------------
class _MHA(nn.Module):
    def __init__(self):
        super().__init__(); self.inp = nn.Linear(5, 8); self.att = nn.MultiheadAttention(8, 2, batch_first=True); self.out = nn.Linear(8, 3)
    def forward(self, x):
        h = self.inp(x).reshape(len(x), 2, 4).repeat(1, 1, 2)
        return self.out(self.att(h, h, h, need_weights=False)[0].mean(1))

def test_multihead_attention():
    model, data = _MHA().eval(), _data()
    for layer in ('inp', 'out'):                                 # before the attention (full route through SDPA) and after
        assert _rel(layer_hessian_trace(model, layer, data), _oracle_trace(model, layer, data)) < 1e-9
    assert 'att.out_proj' not in linear_layers(model)           # outside a measure the module applies it functionally ...
    H = plain_hessian(model, 'att.out_proj.weight', data)      # ... inside, out_proj runs as a module call: exact
    c = layer_curvature(model, 'att.out_proj', data, want=('kappa', 'bias'))
    W = model.att.out_proj.weight.detach()
    assert _rel(c.trace, H.trace().item()) < 1e-9
    assert _rel(c.relative_flatness, ((W @ W.T) * torch.einsum('atbt->ab', H.reshape(8, 8, 8, 8))).sum().item()) < 1e-9
    assert (c.bias_hessian - plain_hessian(model, 'att.out_proj.bias', data)).abs().max() < 1e-12
    with pytest.raises(ValueError, match="applies its weight functionally"):    # a config the adapter does not take
        kv = _MHA().eval(); kv.att = nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True).eval()
        layer_hessian_trace(kv, 'att.out_proj', data)
    e = network_hessian_trace(model, data, rtol=0.01)               # the packed in_proj and out_proj are exact layers now
    assert e.stderr == 0 and _rel(e.value, dense_hessian(model, data).trace().item()) < 1e-9

def test_transformer_encoder_block_linear_layers_exact():
    enc = nn.Sequential(nn.Linear(5, 8), nn.Unflatten(1, (2, 4)), nn.Linear(4, 8),
                        nn.TransformerEncoderLayer(8, 2, 6, dropout=0.0, batch_first=True), nn.Flatten(), nn.Linear(16, 3)).eval()
    data = _data()
    for layer in ('0', '2', '3.linear1', '3.linear2', '5'):
        assert _rel(layer_hessian_trace(enc, layer, data), _oracle_trace(enc, layer, data)) < 1e-9, layer

# --- consistency ---------------------------------------------------------------------------------------------------------
def test_frozen_parameters_counted_like_the_oracle():
    model, data = _mlp(), _data()
    model[0].weight.requires_grad_(False); model[2].bias.requires_grad_(False)
    e = network_hessian_trace(model, data)                     # rule: every parameter, frozen or not (as dense_hessian)
    assert e.n == 0 and _rel(e.value, dense_hessian(model, data).trace().item()) < 1e-9
    ln = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4), nn.Linear(4, 3)).eval(); ln[1].weight.requires_grad_(False)
    e = network_hessian_trace(ln, data, rtol=0.005)              # the frozen LayerNorm affine is exact too (the sweep)
    assert e.n == 0 and _rel(e.value, dense_hessian(ln, data).trace().item()) < 1e-9

def test_forced_gauss_newton_on_smooth_head_refused():
    model, data = _mlp(nn.Tanh), _data()
    with pytest.raises(ValueError, match="route='gauss_newton' is exact only when the head after layer '0' is piecewise linear"):
        layer_hessian_trace(model, '0', data, route='gauss_newton')
    relu = _mlp(nn.ReLU)
    assert _rel(layer_hessian_trace(relu, '0', data, route='gauss_newton'), _oracle_trace(relu, '0', data)) < 1e-9

def test_weighted_sum_loss_curvature_is_pytorchs():
    model, (X, y) = _mlp(), _data(); w = torch.tensor([1., 2., 3.])
    got = layer_hessian_trace(model, '0', (X, y), nn.CrossEntropyLoss(weight=w, reduction='sum'), batch_size=5)
    W0 = model[0].weight.detach()
    f = lambda W: F.cross_entropy(torch.func.functional_call(model, {'0.weight': W}, (X,)), y, weight=w, reduction='sum') / len(X)
    want = torch.func.hessian(f)(W0).reshape(W0.numel(), -1).trace().item()
    assert _rel(got, want) < 1e-10

def test_numpy_data_and_empty_params_refused():
    import numpy as np
    X, y = _data()
    with pytest.raises(TypeError, match="not tensors; convert with torch.as_tensor"): empirical_risk(_mlp(), (X.numpy(), y.numpy()))
    for f in (lambda_max, hutchinson_trace, dense_hessian):
        with pytest.raises(ValueError, match="no parameter names given"): f(_mlp(), (X, y), F.cross_entropy, [])

def test_layer_curvature_refuses_parameters_used_outside_the_call():
    "The weight feeding the layer's own input, or the bias added again: once silent wrong numbers (0.0089 vs 0.026)."
    class Before(nn.Module):
        def __init__(s): super().__init__(); s.fc, s.out = nn.Linear(3, 3), nn.Linear(3, 2)
        def forward(s, x): return s.out(torch.relu(s.fc(F.linear(x, s.fc.weight))))
    class BiasReuse(nn.Module):
        def __init__(s): super().__init__(); s.fc, s.out = nn.Linear(3, 3), nn.Linear(3, 2)
        def forward(s, x): return s.out(torch.relu(s.fc(x)) + s.fc.bias)
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g))
    for M, what in ((Before, 'weight'), (BiasReuse, 'bias')):
        with pytest.raises(ValueError, match=f"uses the {what} of layer 'fc' outside"):
            layer_curvature(M().eval(), 'fc', data)

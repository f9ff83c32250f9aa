"nn.MultiheadAttention's packed input projection `in_proj` as an exact layer, checked against dense float64 Hessians."
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from flatness_nb.core import UnsupportedLayerError, linear_layers, mha_modules
from flatness_nb.hessian import dense_hessian, layer_curvature, layer_dense_hessian, network_hessian_trace
from flatness_nb.sweep import network_curvature
from flatness_nb.testing import rel_err
from oracles import plain_hessian   # torch alone: the independent oracle

TOL = 1e-8

class _SelfAttn(nn.Module):
    "Tokens from a linear layer, one self-attention, a mean over tokens and a classifier: every parameter has an exact route."
    def __init__(self, batch_first=True, bias=True, cross=False):
        super().__init__(); self.bf, self.cross = batch_first, cross
        self.inp = nn.Linear(5, 12); self.att = nn.MultiheadAttention(4, 2, bias=bias, batch_first=batch_first)
        self.out = nn.Linear(4, 3)
    def forward(self, x):
        h = self.inp(x).reshape(len(x), 3, 4)                           # (B, T=3, E=4)
        if not self.bf: h = h.transpose(0, 1)
        a = self.att(h, h.flip(0 if not self.bf else 1), h, need_weights=False)[0] if self.cross else self.att(h, h, h)[0]
        return self.out(a.mean(1 if self.bf else 0))

def _data(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)

@pytest.fixture(autouse=True)
def _f64():
    old = torch.get_default_dtype(); torch.set_default_dtype(torch.float64); torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)

@pytest.mark.parametrize('bf', [True, False])
def test_in_proj_layer_curvature_equals_dense(bf):
    model, data = _SelfAttn(bf).double().eval(), _data()
    c = layer_curvature(model, 'att.in_proj', data, want=('trace', 'kappa', 'bias'))
    H = layer_dense_hessian(model, 'att.in_proj', data)                  # the library's oracle, in_proj as a module
    Hp = plain_hessian(model, 'att.in_proj_weight', data)               # torch alone, the module's own forward
    assert rel_err(H, Hp) <= TOL
    assert rel_err(c.trace, Hp.trace().item()) <= TOL
    W = model.att.in_proj_weight.detach(); d, m = W.shape
    kappa = ((W @ W.T) * torch.einsum('atbt->ab', Hp.reshape(d, m, d, m))).sum().item()
    assert rel_err(c.relative_flatness, kappa) <= TOL
    assert rel_err(c.bias_hessian, plain_hessian(model, 'att.in_proj_bias', data)) <= TOL

@pytest.mark.parametrize('bf', [True, False])
def test_network_hessian_trace_covers_in_proj_exactly(bf):
    model, data = _SelfAttn(bf).double().eval(), _data()
    e = network_hessian_trace(model, data)
    assert e.n == 0 and e.stderr == 0                                    # nothing left to Hutchinson
    assert rel_err(e.value, dense_hessian(model, data).trace().item()) <= TOL
    nc = network_curvature(model, data, curvature='gauss_newton')       # the sweep: in_proj's exact Gauss–Newton block
    assert 'att.in_proj.weight' in nc.traces and not nc.rest

def test_names_and_state_restored():
    model, data = _SelfAttn().double().eval(), _data()
    names = [n for n, _ in model.named_parameters()]
    H1 = dense_hessian(model, data, params=['att.in_proj_weight'])      # the attention's own name is accepted ...
    H2 = dense_hessian(model, data, params=['att.in_proj.weight'])      # ... and in_proj's
    assert torch.equal(H1, H2) and rel_err(H1, plain_hessian(model, 'att.in_proj_weight', data)) <= TOL
    assert [n for n, _ in model.named_parameters()] == names and 'att.in_proj' not in linear_layers(model)
    with pytest.raises(ValueError, match="is a layer inside the library's measures"):
        from flatness_nb.core import LayerSplit
        LayerSplit(model, 'att.in_proj')
    with mha_modules(model): assert 'att.in_proj' not in linear_layers(model)   # measured where named, not in loops

def test_no_bias():
    model, data = _SelfAttn(bias=False).double().eval(), _data()
    c = layer_curvature(model, 'att.in_proj', data, want=('trace',))
    assert rel_err(c.trace, plain_hessian(model, 'att.in_proj_weight', data).trace().item()) <= TOL

def test_cross_attention_refused_with_the_way_out():
    model, data = _SelfAttn(cross=True).double().eval(), _data()
    with pytest.raises(UnsupportedLayerError, match="cross-attention .* hutchinson_trace or dense_hessian"):
        layer_curvature(model, 'att.in_proj', data)
    nc = network_curvature(model, data, curvature='gauss_newton')       # the sweep leaves it to the estimators
    assert 'att.in_proj.weight' in nc.rest and 'att.out_proj.weight' in nc.traces
    H = dense_hessian(model, data, params=['att.in_proj_weight'])       # the dense oracle still sees it (functionally)
    assert rel_err(H, plain_hessian(model, 'att.in_proj_weight', data)) <= TOL

def test_transformer_encoder_layer_self_attention():
    enc = nn.Sequential(nn.Linear(5, 12), nn.Unflatten(1, (3, 4)),
                        nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True), nn.Flatten(), nn.Linear(12, 3))
    enc = enc.double().eval(); data = _data()
    c = layer_curvature(enc, '2.self_attn.in_proj', data, want=('trace',))
    assert rel_err(c.trace, plain_hessian(enc, '2.self_attn.in_proj_weight', data).trace().item()) <= TOL

def test_names_captured_outside_a_measure_still_act():
    "An operator resolves 'att.in_proj_weight' outside the context and multiplies inside it: the owner's name must still act."
    from flatness_nb.operators import HessianOperator
    model, data = _SelfAttn().double().eval(), _data()
    op = HessianOperator(model, data); assert 'att.in_proj_weight' in op.names
    H, V = dense_hessian(model, data), torch.randn(op.shape[0], 3)
    assert rel_err(op @ V, H @ V) <= TOL

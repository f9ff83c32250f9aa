"Operators: products against the dense float64 oracle and curvlinops, duck typing, refusals."
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
from flatness_nb.hessian import dense_hessian
from flatness_nb.operators import (HessianOperator, GGNOperator, ResidualOperator, as_matvec, is_operator,
                                   operator_info, resolve_params)
from flatness_nb.testing import rel_err


@pytest.fixture
def setting():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(32, 3)).double().eval()
    X, y = torch.randn(20, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    return m, (X, y)


def test_hessian_dense(setting):
    m, d = setting
    op = HessianOperator(m, d, batch_size=8)
    assert rel_err(op @ torch.eye(op.shape[0], dtype=torch.float64), dense_hessian(m, d)) < 1e-10
    assert op.passes == 1 and op.matvecs == op.shape[0]


def test_layer_block(setting):
    m, d = setting
    op = HessianOperator(m, d).block('3')
    assert op.names == ['3.weight', '3.bias']
    assert rel_err(op @ torch.eye(op.shape[0], dtype=torch.float64), dense_hessian(m, d, params=op.names)) < 1e-10


def test_residual_is_h_minus_g(setting):
    m, d = setting
    h, g = HessianOperator(m, d), GGNOperator(m, d)
    r = h - g
    assert isinstance(r, ResidualOperator)
    v = torch.randn(h.shape[0], 3, dtype=torch.float64)
    assert rel_err(r @ v, h @ v - g @ v) < 1e-12


def test_curvlinops(setting):
    cl = pytest.importorskip('curvlinops')
    m, (X, y) = setting
    batches = [(X[:8], y[:8]), (X[8:], y[8:])]
    V = torch.randn(sum(p.numel() for p in m.parameters()), 3, dtype=torch.float64)
    for ours, theirs in ((HessianOperator, cl.HessianLinearOperator), (GGNOperator, cl.GGNLinearOperator)):
        c = theirs(m, nn.CrossEntropyLoss(), list(m.parameters()), batches)
        assert is_operator(c)
        assert rel_err(ours(m, batches) @ V, as_matvec(c)(V)) < 1e-12


def test_scipy_and_refusals(setting):
    m, d = setting
    op = HessianOperator(m, d)
    S = op.to_scipy()
    v = np.ones(op.shape[0])
    assert rel_err(torch.as_tensor(S @ v), op @ torch.as_tensor(v)) < 1e-12
    assert operator_info(S)[0] == op.shape[0]
    with pytest.raises(ValueError, match='a vector'): op @ torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match='names neither'): resolve_params(m, 'nope')
    with pytest.raises(TypeError, match='expected an operator'): operator_info(torch.eye(3))


@pytest.mark.parametrize("bs,reuse", [(64, None), (8, True)])
def test_reuse_graph(setting, bs, reuse):
    "A kept gradient graph gives the products of a rebuilt one, and is rebuilt when the weights change."
    m, d = setting
    V = torch.randn(sum(p.numel() for p in m.parameters()), 3, dtype=torch.float64)
    op, op0 = (HessianOperator(m, d, batch_size=bs, reuse_graph=r) for r in (reuse, False))
    ref = op0 @ V
    assert rel_err(op @ V, ref) < 1e-12 and rel_err(op @ V, ref) < 1e-12
    assert len(op._graphs) == -(-20 // bs) and op0._graphs == []
    assert op.block('3').reuse_graph is reuse
    with torch.no_grad(): m[3].weight.mul_(1.5)
    assert rel_err(op @ V, dense_hessian(m, d) @ V) < 1e-10


@pytest.mark.parametrize("reuse", [True, False])
def test_one_at_a_time(setting, reuse):
    "batched=False (one backward pass per vector) gives the batched products."
    m, d = setting
    V = torch.randn(sum(p.numel() for p in m.parameters()), 3, dtype=torch.float64)
    ref = HessianOperator(m, d, batch_size=8, reuse_graph=False) @ V
    op = HessianOperator(m, d, batch_size=8, reuse_graph=reuse, batched=False)
    assert rel_err(op @ V, ref) < 1e-12 and rel_err(op @ V, ref) < 1e-12
    assert op.block('3').batched is False


class _Att(nn.Module):
    "Self-attention then a head: every measure runs the attention's projections as modules (core.mha_modules)."
    def __init__(self):
        super().__init__()
        self.att, self.head = nn.MultiheadAttention(4, 1, batch_first=True), nn.Linear(4, 3)
    def forward(self, x): return self.head(self.att(x, x, x, need_weights=False)[0].mean(1))


@pytest.mark.parametrize('kind', [HessianOperator, ResidualOperator])
def test_attention_dense(kind):
    "The packed input projection is measured under the model's own names (a regression: it once got no gradient)."
    torch.manual_seed(0)
    m = _Att().double().eval()
    d = (torch.randn(12, 5, 4, dtype=torch.float64), torch.randint(0, 3, (12,)))
    op = kind(m, d)
    assert op.names[:2] == ['att.in_proj_weight', 'att.in_proj_bias']
    M = op @ torch.eye(op.shape[0], dtype=torch.float64)
    H = dense_hessian(m, d)
    if kind is HessianOperator: assert rel_err(M, H) < 1e-10
    else: assert rel_err(M, H - GGNOperator(m, d) @ torch.eye(op.shape[0], dtype=torch.float64)) < 1e-10
    blk = HessianOperator(m, d, params='att.in_proj_weight')
    i = slice(0, blk.shape[0])
    assert rel_err(blk @ torch.eye(blk.shape[0], dtype=torch.float64), H[i, i]) < 1e-10

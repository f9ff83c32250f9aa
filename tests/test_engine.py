"The engine's structure: an acyclic import graph between library modules, measures on bare and attention models, and every fast oracle case of `flatness_nb.testing.ORACLE_CASES` against the dense Hessian."
import ast, pathlib, warnings
import pytest, torch, torch.nn as nn, torch.nn.functional as F

PKG = pathlib.Path(__file__).resolve().parents[1] / 'flatness_nb'

def import_graph():
    "Module → library modules it imports anywhere in its source (top level or inside functions)."
    mods = {p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_')}
    g = {}
    for m in mods:
        deps = set()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')             # escape sequences in docstrings are not our concern here
            tree = ast.parse((PKG / f'{m}.py').read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module: deps.add(node.module.split('.')[0])
                elif node.level == 1: deps |= {a.name for a in node.names}
                elif node.module and node.module.startswith('flatness_nb.'): deps.add(node.module.split('.')[1])
                elif node.module == 'flatness_nb': deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split('.')[1] for a in node.names if a.name.startswith('flatness_nb.')}
        g[m] = (deps & mods) - {m}
    return g

def find_cycle(g):
    "One cycle of the graph as a list of modules, or None."
    state, stack = {}, []
    def visit(u):
        state[u] = 1; stack.append(u)
        for v in sorted(g[u]):
            if state.get(v) == 1: return stack[stack.index(v):] + [v]
            if v not in state and (c := visit(v)): return c
        state[u] = 2; stack.pop()
    for u in sorted(g):
        if u not in state and (c := visit(u)): return c

def test_import_graph_acyclic():
    g = import_graph()
    assert 'core' in g and 'hessian' in g['flatness'] and 'zoo' in g['distributed']
    assert find_cycle(g) is None, f"import cycle: {' → '.join(find_cycle(g))}"

def test_find_cycle_detects_a_cycle():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']

@pytest.fixture
def f64():
    old = torch.get_default_dtype(); torch.set_default_dtype(torch.float64); torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)

def test_bare_linear_measure_all(f64):
    from flatness_nb.measures import measure_all
    from flatness_nb.compression import adaptive_sharpness
    m = nn.Linear(4, 3).eval(); X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    row = measure_all(m, (X, y), (X, y), pac_bayes=False, compression=False)
    assert 'kappa_phi[model]' in row and 'kappa_phi[]' not in row
    assert row['adaptive_sharpness_2nd_order'] == pytest.approx(adaptive_sharpness(m, (X, y), F.cross_entropy), rel=1e-12)
    assert row['adaptive_sharpness_2nd_order'] > 0

class Attn(nn.Module):
    def __init__(self):
        super().__init__(); self.inp = nn.Linear(3, 8); self.att = nn.MultiheadAttention(8, 2, batch_first=True); self.fc = nn.Linear(8, 2)
    def forward(self, x):
        h = self.inp(x.reshape(len(x), 4, 3)); return self.fc(self.att(h, h, h, need_weights=False)[0].mean(1))

def test_attention_forward_ad(f64):
    from flatness_nb.measures import fisher_rao_norm
    from flatness_nb.compression import iimls, jacobian_spectral_norms
    m = Attn().eval(); X, y = torch.randn(6, 12), torch.randint(0, 2, (6,))
    fr = fisher_rao_norm(m, (X, y), F.cross_entropy)
    # the same ⟨θ, ∇ℓ_i⟩ by reverse mode, sample by sample
    ref = 0.0
    for i in range(6):
        m.zero_grad(); F.cross_entropy(m(X[i:i + 1]), y[i:i + 1]).backward()
        ref += sum((p.detach() * p.grad).sum() for p in m.parameters()).item() ** 2
    assert fr == pytest.approx(ref / 6, rel=1e-9)
    assert iimls(m, (X, y)) > 0 and torch.isfinite(jacobian_spectral_norms(m, X[:2], iters=20)).all()

def test_unknown_layer_lists_registry(f64):
    from flatness_nb.core import LAYER_ADAPTERS, LayerAdapter, UnsupportedLayerError, layer_adapter, register_layer, supported_layers
    from flatness_nb.flatness import relative_flatness
    m = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 2)).eval(); X, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    listed = 'nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding'
    with pytest.raises(TypeError, match=f"is a LayerNorm, not a linear layer \\({listed}\\)"): relative_flatness(m, '1', (X, y))
    with pytest.raises(UnsupportedLayerError, match=f"LayerNorm is not a supported linear layer; supported: {listed}"): layer_adapter(nn.LayerNorm(3))
    class BilinearAdapter(LayerAdapter): types = (nn.Bilinear,)
    register_layer(BilinearAdapter())
    try: assert supported_layers() == listed + ', nn.Bilinear'       # generated from the registry
    finally: del LAYER_ADAPTERS[nn.Bilinear]
    assert supported_layers() == listed

from flatness_nb.testing import ORACLE_CASES

@pytest.mark.parametrize('oc', [c for c in ORACLE_CASES if 'zoo' not in c.tags], ids=lambda o: o.name)
def test_layer_against_oracle(f64, oc):
    "Every fast oracle case (MLPs, CNNs, Conv1d/3d, embeddings, tokens, attention): each summary within 1e-9 of the dense H."
    from flatness_nb.hessian import layer_curvature, layer_dense_hessian, dense_hessian
    from flatness_nb.testing import build_case, oracle_errors
    model, name, X, y, lf = build_case(oc)
    c = layer_curvature(model, name, (X, y), lf, **oc.kw)
    has_b = getattr(model.get_submodule(name), 'bias', None) is not None
    Hb = dense_hessian(model, (X, y), lf, [f'{name}.bias']) if has_b else None
    e = oracle_errors(oc, layer_dense_hessian(model, name, (X, y), lf), c, Hb)
    assert set(e) == {'trace', 'kappa', 'block_traces', 'diagonal', 'rho'} | ({'bias'} if has_b else set())
    assert max(e.values()) < 1e-9, (c.route, e)

def test_trace_request_skips_rho_and_diagonal(f64):
    import unittest.mock as mock, flatness_nb.hessian as fh
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).eval(); D = (torch.randn(9, 4), torch.randint(0, 3, (9,)))
    def boom(*a): raise AssertionError("not requested")
    with mock.patch.dict(fh._FLAT, rho=boom, diagonal=boom):
        tr = fh.layer_hessian_trace(m, '0', D)
    assert tr == pytest.approx(fh.layer_curvature(m, '0', D).trace, rel=1e-12)

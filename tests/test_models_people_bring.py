"""Models as people bring them (issue 22): tiny random-init Hugging Face models (no download) returning ModelOutput, dict
batches with 'labels' inside, a causal LM with -100 padding (a token loss), compiled and DataParallel models, a bfloat16
model; each measured as written and compared with an independent dense float64 Hessian (one forward over the whole data,
torch.func.hessian of the loss as PyTorch defines it). Plus the clear errors of the bad-input battery."""
import copy, warnings
import pytest, torch, torch.nn as nn, torch.nn.functional as F
from torch.func import functional_call
from flatness_nb.core import Inputs, SelectOutput, empirical_risk, exact_attention, iter_batches, linear_layers
from flatness_nb.hessian import (dense_hessian, hutchinson_trace, lambda_max, layer_curvature, layer_dense_hessian,
                                 layer_hessian_trace)
from flatness_nb.sweep import network_curvature

transformers = pytest.importorskip('transformers')
torch.set_num_threads(1)

pytestmark = pytest.mark.usefixtures('float64')   # tests/conftest.py

def _rel(a, b): return abs(a - b) / max(abs(b), 1e-30)

def _oracle(model, pname, loss):
    "Dense Hessian of loss(f) w.r.t. one parameter, f the model's logits as a function of its inputs (one whole-data forward)."
    w = dict(model.named_parameters())[pname].detach()
    def L(v):                                                          # math attention: forward-mode AD runs through it
        def f(*a, **kw):
            o = functional_call(model, {pname: v}, a, kw)
            return o if torch.is_tensor(o) else o.logits
        return loss(f)
    with exact_attention(): return torch.func.hessian(L)(w).reshape(w.numel(), w.numel())

def _kappa(H, W):
    "κ^φ_Tr = Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) from a dense Hessian ordered as W's row-major (d, m) entries."
    d, m = W.shape
    return ((W @ W.T) * torch.einsum('atbt->ab', H.reshape(d, m, d, m))).sum().item()

# --- Hugging Face vision: ModelOutput read through logits, names the user's own ------------------------------------------
def test_hf_resnet_modeloutput():
    from transformers import ResNetConfig, ResNetForImageClassification
    cfg = ResNetConfig(num_channels=2, embedding_size=4, hidden_sizes=[3, 4], depths=[1, 1], layer_type='basic', num_labels=3)
    m = ResNetForImageClassification(cfg).eval()
    X, y = torch.randn(6, 2, 8, 8), torch.randint(0, 3, (6,))
    loss = lambda f: F.cross_entropy(f(X), y)
    assert 'classifier.1' in linear_layers(m)                         # no wrapper, no prefix
    H = _oracle(m, 'classifier.1.weight', loss)
    c = layer_curvature(m, 'classifier.1', (X, y), batch_size=4, want=('kappa',))
    assert _rel(c.trace, H.trace().item()) < 1e-8 and _rel(c.relative_flatness, _kappa(H, m.classifier[1].weight.detach())) < 1e-8
    conv = 'resnet.encoder.stages.1.layers.0.layer.0.convolution'
    assert _rel(layer_hessian_trace(m, conv, (X, y), batch_size=4), _oracle(m, conv + '.weight', loss).trace().item()) < 1e-8

def test_hf_vit_modeloutput():
    from transformers import ViTConfig, ViTForImageClassification
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=2, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=12, num_labels=3)
    m = ViTForImageClassification(cfg).eval()
    X, y = torch.randn(6, 2, 8, 8), torch.randint(0, 3, (6,))
    loss = lambda f: F.cross_entropy(f(X), y)
    for layer in ('classifier', 'vit.layers.0.attention.q_proj', 'vit.layers.0.attention.o_proj', 'vit.layers.0.mlp.fc1'):
        assert _rel(layer_hessian_trace(m, layer, (X, y), batch_size=4), _oracle(m, layer + '.weight', loss).trace().item()) < 1e-8

# --- BERT with dict batches ------------------------------------------------------------------------------------------------
def _bert():
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
                     max_position_embeddings=16, num_labels=3)
    m = BertForSequenceClassification(cfg).eval()
    ids = torch.randint(0, 30, (10, 6)); am = torch.ones_like(ids); am[3:, 4:] = 0
    return m, ids, am, torch.randint(0, 3, (10,))

def test_bert_dict_batches():
    m, ids, am, y = _bert()
    loss = lambda f: F.cross_entropy(f(input_ids=ids, attention_mask=am), y)
    inside = [dict(input_ids=ids[:6], attention_mask=am[:6], labels=y[:6]), dict(input_ids=ids[6:], attention_mask=am[6:], labels=y[6:])]
    beside = [({'input_ids': ids[:6], 'attention_mask': am[:6]}, y[:6]), ({'input_ids': ids[6:], 'attention_mask': am[6:]}, y[6:])]
    positional = ((ids, am), y)                                       # a tuple: the model's positional arguments
    whole = dict(input_ids=ids, attention_mask=am, labels=y)          # the whole data set as one dict, split by batch_size
    E = loss(lambda **kw: m(**kw).logits).item()
    for data in (inside, beside, positional, whole):
        assert _rel(empirical_risk(m, data, batch_size=6), E) < 1e-12
    for layer in ('classifier', 'bert.encoder.layer.0.intermediate.dense'):
        t = _oracle(m, layer + '.weight', loss).trace().item()
        for data in (inside, positional):
            assert _rel(layer_hessian_trace(m, layer, data, batch_size=6), t) < 1e-8, layer
    nc = network_curvature(m, inside)                                 # the sweep on dict batches: the classifier is exact
    assert _rel(nc.traces['classifier.weight'], _oracle(m, 'classifier.weight', loss).trace().item()) < 1e-8
    H = dense_hessian(m, inside, params=['classifier.bias'])
    assert (H - _oracle(m, 'classifier.bias', loss)).abs().max() < 1e-12
    e = hutchinson_trace(m, inside, params=['classifier.weight'], rtol=0.05)
    assert abs(e.value - nc.traces['classifier.weight']) < 5 * e.stderr

def test_structured_batch_messages():
    m, ids, am, y = _bert()
    with pytest.raises(TypeError, match=r"batch 1 is a tuple of 3 \(dict, Tensor, Tensor\), not an \(x, y\) pair"):
        empirical_risk(m, [({'input_ids': ids}, y, y)])
    with pytest.raises(TypeError, match=r"batch 1 is a dict with keys \['input_ids'\].*'labels'"):
        empirical_risk(m, [{'input_ids': ids}])
    with pytest.raises(ValueError, match="batch 1: x has 4 samples but y has 10"):
        empirical_risk(m, [({'input_ids': ids[:4]}, y)])

# --- a Llama-style causal LM: token loss with -100 padding ------------------------------------------------------------------
def _llama(tie=False):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=16, tie_word_embeddings=tie)
    lm = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 16, (5, 7)); am = torch.ones_like(ids); am[2:, 5:] = 0; am[4, 3:] = 0
    lab = torch.cat([ids[:, 1:], torch.full((5, 1), -100)], 1)        # next-token labels, -100 at padding and the end
    lab[am == 0] = -100; lab[:, :-1][am[:, 1:] == 0] = -100
    data = [dict(input_ids=ids[:3], attention_mask=am[:3], labels=lab[:3]), dict(input_ids=ids[3:], attention_mask=am[3:], labels=lab[3:])]
    loss = lambda f: F.cross_entropy(f(input_ids=ids, attention_mask=am).flatten(0, 1), lab.flatten())   # mean over tokens
    return lm, data, loss

def _rms_float64(self, h):
    "LlamaRMSNorm without its float32 cast (the model as written rounds its norm to float32: agreement ~1e-7 there)."
    return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

def test_llama_token_loss(monkeypatch):
    from transformers.models.llama import modeling_llama
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, 'forward', _rms_float64)
    lm, data, loss = _llama()
    E = loss(lambda **kw: lm(**kw).logits).item()
    per_batch = [F.cross_entropy(lm(input_ids=b['input_ids'], attention_mask=b['attention_mask']).logits.flatten(0, 1),
                                 b['labels'].flatten()).item() for b in data]
    assert abs(sum(per_batch) / 2 - E) > 1e-3                          # the mean of batch means is another number ...
    assert _rel(empirical_risk(lm, data), E) < 1e-12                   # ... E_emp is the mean over all non-padding tokens
    for layer in ('lm_head', 'model.layers.0.mlp.down_proj'):
        H = _oracle(lm, layer + '.weight', loss)
        c = layer_curvature(lm, layer, data, want=('kappa',))
        W = dict(lm.named_parameters())[layer + '.weight'].detach()
        assert _rel(c.trace, H.trace().item()) < 1e-8 and _rel(c.relative_flatness, _kappa(H, W)) < 1e-8, layer
    nc = network_curvature(lm, data, layers=['lm_head'])
    assert _rel(nc.traces['lm_head.weight'], _oracle(lm, 'lm_head.weight', loss).trace().item()) < 1e-8
    Hn = dense_hessian(lm, data, params=['model.norm.weight'])
    assert (Hn - _oracle(lm, 'model.norm.weight', loss)).abs().max() < 1e-12

def test_llama_token_loss_refusals(monkeypatch):
    import flatness_nb.sweep
    lm, data, _ = _llama()                                            # T·V = 112 entries per sample; pretend it is too many
    monkeypatch.setattr(flatness_nb.sweep, 'MAX_OUTPUT_HESSIAN', 100)
    with pytest.raises(ValueError, match=r"output has k = 112 entries per sample .*hutchinson_trace or split_trace"):
        layer_hessian_trace(lm, 'lm_head', data)
    monkeypatch.undo()
    lm, data, _ = _llama(tie=True)
    with pytest.raises(ValueError, match=r"layer 'lm_head' shares its weight with \['model.embed_tokens.weight'\]"):
        layer_hessian_trace(lm, 'lm_head', data)
    from flatness_nb.measures import fisher_rao_norm
    lm, data, _ = _llama()
    with pytest.raises(ValueError, match="are a token loss.*this measure averages one loss per sequence"):
        fisher_rao_norm(lm, data)

# --- wrappers keep the user's names ------------------------------------------------------------------------------------------
def _mlp(): return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).eval()

def test_compiled_and_parallel_models():
    m, X, y = _mlp(), torch.randn(12, 5), torch.randint(0, 3, (12,))
    H = _oracle(m, '2.weight', lambda f: F.cross_entropy(f(X), y)).trace().item()
    for w, pre in ((torch.compile(m), '_orig_mod.'), (nn.DataParallel(m), 'module.'), (SelectOutput(m, slice(None)), 'model.')):
        assert list(linear_layers(w)) == ['0', '2']                    # the user's own names
        for name in ('2', pre + '2', m[2]):                            # the prefixed name still works
            assert _rel(layer_hessian_trace(w, name, (X, y)), H) < 1e-8
        nc = network_curvature(w, (X, y))
        assert set(nc.traces) | set(nc.rest) == {'0.weight', '0.bias', '2.weight', '2.bias'}
        assert _rel(dense_hessian(w, (X, y), params=['2.weight']).trace().item(), H) < 1e-8

# --- precision --------------------------------------------------------------------------------------------------------------
def test_half_precision_measured_on_a_float32_copy():
    m, X, y = _mlp(), torch.randn(12, 5), torch.randint(0, 3, (12,))
    h = copy.deepcopy(m).to(torch.bfloat16)
    ref = layer_hessian_trace(copy.deepcopy(h).float(), '2', (X, y))
    with pytest.warns(UserWarning, match=r"torch.bfloat16 parameters; it is measured on a torch.float32 copy"):
        v = layer_hessian_trace(h, '2', (X, y))
    assert _rel(v, ref) < 1e-12 and h[2].weight.dtype == torch.bfloat16          # the user's model is left in bfloat16
    class Autocast(nn.Module):                                       # full-precision weights, half-precision forward
        def __init__(self): super().__init__(); self.net = _mlp()
        def forward(self, x):
            with torch.autocast('cpu', dtype=torch.bfloat16): return self.net(x)
    with pytest.raises(ValueError, match=r"returns torch.bfloat16 outputs from torch.float32 weights: autocast"):
        layer_hessian_trace(Autocast().float().eval(), 'net.2', (X.float(), y))   # (autocast leaves float64 alone)

# --- the remaining unclear errors -------------------------------------------------------------------------------------------
class _Unused(nn.Module):
    def __init__(self): super().__init__(); self.a = nn.Linear(5, 4); self.aux = nn.Linear(5, 2); self.b = nn.Linear(4, 3)
    def forward(self, x): self.aux(x); return self.b(torch.tanh(self.a(x)))   # aux's output is dropped

def test_unused_output_has_zero_curvature():
    m, data = _Unused().eval(), (torch.randn(12, 5), torch.randint(0, 3, (12,)))
    assert layer_hessian_trace(m, 'aux', data) == 0.0 and dense_hessian(m, data, params=['aux.weight']).abs().max() == 0
    assert network_curvature(m, data).traces['aux.weight'] == 0.0

def test_clear_errors():
    m, X, y = _mlp(), torch.randn(12, 5), torch.randint(0, 3, (12,))
    with pytest.raises(ValueError, match=r"MSELoss needs floating targets.*torch.int64.*F.cross_entropy.*y.float\(\)"):
        layer_hessian_trace(m, '2', (X, y), nn.MSELoss())
    with pytest.raises(TypeError, match=r"loss_fn is the class CrossEntropyLoss, not a loss; pass an instance, CrossEntropyLoss\(\)"):
        layer_hessian_trace(m, '2', (X, y), nn.CrossEntropyLoss)
    class NaNOut(nn.Module):
        def __init__(self): super().__init__(); self.a = nn.Linear(5, 3)
        def forward(self, x): return self.a(x) * torch.tensor(float('nan'))
    with pytest.raises(ValueError, match=r"the model's output contains NaN or inf on the first batch \(36 of 36 entries\)"):
        lambda_max(NaNOut().eval(), (X, y))
    for f in (lambda_max, hutchinson_trace, network_curvature, empirical_risk):
        with pytest.raises(TypeError, match=r"TorchScript module.*load_state_dict"): f(torch.jit.script(m), (X, y))
    from flatness_nb.compression import compression_measures
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3)).eval()
    with pytest.raises(ValueError, match=r"inputs are torch.int64 \(token ids or codes\), which have no derivative"):
        compression_measures(emb, (torch.randint(0, 10, (12, 2)), y))

def test_measure_all_skips_before_the_pass():
    from flatness_nb.measures import measure_all
    emb = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    data = (torch.randint(0, 10, (20, 2)), torch.randint(0, 3, (20,)))
    with pytest.warns(UserWarning, match="measure_all skips compression: .*no derivative"):
        row = measure_all(emb, data, data, pac_bayes=False, lanczos_iters=5)
    assert 'compression' in row['skipped'] and 'mls' not in row and row['train_loss'] > 0

def test_shard_structured_data():
    from flatness_nb.distributed import shard
    m, ids, am, y = _bert()
    whole = dict(input_ids=ids, attention_mask=am, labels=y)
    parts = [shard(whole, r, 3) for r in range(3)]                    # (Inputs, y) slices, one per rank
    assert [len(p[1]) for p in parts] == [3, 3, 4]
    E = sum(empirical_risk(m, p) * len(p[1]) for p in parts) / len(y)
    assert _rel(E, empirical_risk(m, whole)) < 1e-12

def test_measure_all_on_bert_refuses_or_finishes():
    from flatness_nb.measures import measure_all
    m, ids, am, y = _bert()
    ids, am, y = ids[:6, :4], am[:6, :4], y[:6]                        # small: every measure runs on it
    data = [dict(input_ids=ids[:3], attention_mask=am[:3], labels=y[:3]), dict(input_ids=ids[3:], attention_mask=am[3:], labels=y[3:])]
    with pytest.warns(UserWarning, match="measure_all skips compression: .*one continuous input only"):
        row = measure_all(m, data, data, pac_bayes=False, lanczos_iters=3)
    assert row['skipped'].startswith('compression:') and 'mls' not in row
    assert _rel(row['train_loss'], F.cross_entropy(m(input_ids=ids, attention_mask=am).logits, y).item()) < 1e-12
    assert all(v == v for k, v in row.items() if k not in ('skipped', 'adaptive_sharpness_2nd_order'))   # no NaN

def test_other_measures_take_dict_batches():
    from flatness_nb.flatness import relative_flatness
    from flatness_nb.robustness import feature_robustness
    from flatness_nb.representativeness import smoothed_risk, true_risk
    from flatness_nb.compression import param_grad_sqnorms
    from flatness_nb.estimators import exact_ggn_traces
    m, ids, am, y = _bert()
    data = [dict(input_ids=ids[:5], attention_mask=am[:5], labels=y[:5]), dict(input_ids=ids[5:], attention_mask=am[5:], labels=y[5:])]
    E = F.cross_entropy(m(input_ids=ids, attention_mask=am).logits, y).item()
    assert _rel(true_risk(m, data).value, E) < 1e-12
    assert abs(smoothed_risk(m, 'classifier', data, delta=1e-3).value - E) < 1e-3
    assert relative_flatness(m, 'classifier', data) == layer_curvature(m, 'classifier', data, want=('kappa',)).relative_flatness
    fr = feature_robustness(m, 'bert.pooler.dense', data, F.cross_entropy, torch.eye(8), delta=0.1)
    assert fr == fr
    with pytest.raises(ValueError, match="param_grad_sqnorms runs the model on one sample at a time under torch.func.vmap"):
        param_grad_sqnorms(m, Inputs((), dict(input_ids=ids, attention_mask=am)))
    with pytest.raises(ValueError, match=r"exact_ggn_traces runs the model .*hutchpp_trace\(operator=\"ggn\"\)"):
        exact_ggn_traces(m, data, params=['bert.embeddings.LayerNorm.weight'])

def test_llama_whole_network_trace(monkeypatch):
    from transformers.models.llama import modeling_llama
    from flatness_nb.hessian import network_hessian_trace
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, 'forward', _rms_float64)
    lm, data, _ = _llama()
    e = network_hessian_trace(lm, data, max_probes=64)               # exact blocks + Hutchinson for the rest, over tokens
    assert abs(e.value - dense_hessian(lm, data).trace().item()) < 4 * e.stderr + 1e-8

def test_llama_measure_all_skips_what_needs_one_loss_per_sequence():
    from flatness_nb.measures import measure_all
    lm, data, _ = _llama()
    with pytest.warns(UserWarning, match="measure_all skips fisher_rao: .*token loss"):
        row = measure_all(lm, data, data, pac_bayes=False, lanczos_iters=3)
    assert {'fisher_rao', 'compression'} <= {s.split(':')[0] for s in row['skipped'].split('; ')}
    assert 'trace_H' in row and 'lambda_max' in row and 0 <= row['train_acc'] <= 1

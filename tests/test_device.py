"""CUDA readiness without a GPU: no code draws with a CPU generator or converts a tensor to NumPy in a way that breaks under
a CUDA default device, `testing.generator` follows the default device, seeded library inputs land on the default device,
and `tools/gpu_check.py` refuses plainly where CUDA is missing."""
import json, re, subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
BARE_GENERATOR = re.compile(r'torch\.Generator\(\s*\)')        # always a CPU generator; torch.randn(..., generator=g) draws on the default device
NUMPY_NOT_CPU = re.compile(r'(?<!\.cpu\(\))\.numpy\(\)')        # .numpy() of a CUDA tensor raises; .cpu().numpy() and .numpy(force=True) do not
# (file, text of the line): why it is right as it is. Each entry must still match a line (a stale entry fails the test).
ALLOWED = {
    ('nbs/00b_testing.ipynb', "cpu_draw(torch.Generator().manual_seed(5)))  # the CPU stream, bit for bit"):
        "the reference: generator(seed, 'cpu') must give exactly torch.Generator()'s CPU stream (drawn with device='cpu')",
    ('nbs/00b_testing.ipynb', "if dev.type == 'cpu': test_eq(torch.randn(6, generator=generator(5)), cpu_draw(torch.Generator().manual_seed(5)))"):
        "the same reference, compared only on a CPU run",
}
# Known CUDA breakers in files this test's author does not own, with the exact fix (each entry must still match, too).
PENDING: dict = {}

def code_lines():
    "(file, line) of every code cell line of nbs/*.ipynb and every line of flatness_nb/*.py, comments dropped."
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            if c['cell_type'] == 'code':
                for ln in ''.join(c['source']).split('\n'): yield f'nbs/{nb.name}', ln
    for py in sorted((ROOT / 'flatness_nb').glob('*.py')):
        for ln in py.read_text().split('\n'): yield f'flatness_nb/{py.name}', ln

def hits(pattern):
    "(file, stripped line) of every line where `pattern` matches outside a trailing comment."
    return [(f, ln.strip()) for f, ln in code_lines() if pattern.search(re.sub(r'(^|\s)#(?!\|).*$', '', ln))]

def _excused(hit):
    "The allow-list or pending entry that covers this hit, or None."
    return next((k for k in {**ALLOWED, **PENDING} if k[0] == hit[0] and k[1] in hit[1]), None)

@pytest.mark.parametrize('name,pattern,fix', [
    ('bare torch.Generator()', BARE_GENERATOR, "use flatness_nb.testing.generator(seed) (default device) or generator(seed, 'cpu') "
                                               "with device='cpu' draws (see 00b_testing, 'Which generator where')"),
    ('.numpy() without .cpu()', NUMPY_NOT_CPU, "write .cpu().numpy() (or .detach().cpu().numpy())")], ids=['generator', 'numpy'])
def test_no_cuda_breakers(name, pattern, fix):
    "No bare CPU generator and no .numpy() of a possibly-CUDA tensor, except the listed ones."
    bad = [h for h in hits(pattern) if _excused(h) is None]
    assert not bad, f"{len(bad)} {name} that would fail under a CUDA default device; {fix}:\n" + \
                    '\n'.join(f"  {f}: {ln}" for f, ln in bad)

def test_excuses_are_not_stale():
    "Every allow-list and pending entry still matches a line (drop an entry once its line is fixed or gone)."
    lines = set((f, ln.strip()) for f, ln in code_lines())
    stale = [k for k in {**ALLOWED, **PENDING} if not any(f == k[0] and k[1] in ln for f, ln in lines)]
    assert not stale, f"remove these entries from tests/test_device.py, their lines are gone or fixed: {stale}"

def test_scan_finds_what_it_should():
    "The patterns flag the breakers and pass their fixes."
    assert BARE_GENERATOR.search("g = torch.Generator().manual_seed(0)") and BARE_GENERATOR.search("torch.Generator( )")
    assert not BARE_GENERATOR.search("torch.Generator(device=W.device)") and not BARE_GENERATOR.search("generator(0)")
    assert NUMPY_NOT_CPU.search("x.numpy()") and NUMPY_NOT_CPU.search("x.detach().numpy()")
    for ok in ("x.cpu().numpy()", "x.detach().cpu().numpy()", "x.numpy(force=True)", "df.to_numpy()"):
        assert not NUMPY_NOT_CPU.search(ok), ok

def test_generator_follows_the_default_device(monkeypatch):
    "generator(seed) asks torch for the default device; an explicit device wins; on the CPU it is torch.Generator()'s stream."
    from flatness_nb import testing
    assert testing.generator(3).device == torch.get_default_device()
    assert torch.equal(torch.randn(5, generator=testing.generator(3), device='cpu'),
                       torch.randn(5, generator=torch.Generator().manual_seed(3), device='cpu'))
    made = []
    class FakeGenerator:
        "Records the device it is made on."
        def __init__(self, device=None): made.append(torch.device(device))
        def manual_seed(self, s): self.seed = s; return self
    monkeypatch.setattr(torch, 'get_default_device', lambda: torch.device('cuda', 1))
    monkeypatch.setattr(torch, 'Generator', FakeGenerator)
    assert testing.generator(7).seed == 7 and made == [torch.device('cuda', 1)]
    testing.generator(7, 'cpu'); assert made[-1] == torch.device('cpu')
    monkeypatch.delattr(torch, 'get_default_device')       # torch < 2.3: the device of a new tensor
    assert testing.default_device() == torch.zeros(()).device

def test_seeded_inputs_land_on_the_default_device():
    "Data drawn on the CPU by the library is moved to the default device (meta stands in for CUDA: no numbers needed)."
    from flatness_nb.data import SyntheticTask
    task = SyntheticTask(1.0, m=3, seed=0)
    X, y = task.sample(6, 1)
    try:
        torch.set_default_device('meta')
        tm = SyntheticTask(1.0, m=3, seed=0); Xm, ym = tm.sample(6, 1)
    finally: torch.set_default_device(None)
    assert {Xm.device.type, ym.device.type, tm.phi.inv_weights.device.type} == {'meta'}
    assert (Xm.shape, ym.shape) == (X.shape, y.shape) and X.device.type == 'cpu'

def test_gpu_check_without_cuda_says_so():
    "`python tools/gpu_check.py` on a machine without CUDA runs nothing, exits 2 and says why and what to do instead."
    if torch.cuda.is_available(): pytest.skip('CUDA is available here: the refusal path cannot be reached')
    r = subprocess.run([sys.executable, 'tools/gpu_check.py'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'CUDA is not available here' in r.stdout and 'nothing ran' in r.stdout and '--device cpu' in r.stdout

def test_gpu_check_plans_every_notebook(tmp_path):
    "The plan runs every numbered notebook once, one nbdev_test call each, gpu cells only on CUDA; --quick the theorems."
    sys.path.insert(0, str(ROOT / 'tools'))
    try: import gpu_check
    finally: sys.path.pop(0)
    every = sorted(p.stem for p in (ROOT / 'nbs').glob('[0-9]*.ipynb'))
    for dev in ('cpu', 'cuda'):
        rows = gpu_check.steps(dev, 100, False, tmp_path)
        nb = [r for r in rows if r['cmd'][0] == 'nbdev_test']
        assert sorted(r['step'] for r in nb) == every
        assert all(r['cmd'].count('--path') == 1 and ('gpu' in r['cmd']) == (dev == 'cuda') for r in nb)
        assert set(gpu_check.SHARES) == {r['group'] for r in rows}
    quick = gpu_check.steps('cuda', 100, True, tmp_path)
    assert [r['step'] for r in quick if r['cmd'][0] == 'nbdev_test'] == gpu_check.THEOREMS
    assert any('--tiny' in r['cmd'] for r in quick) and set(gpu_check.QUICK_SHARES) == {r['group'] for r in quick}
    assert 'gpu (CPU run)' in gpu_check.skipped_cells('06_compression', cuda=False)
    assert 'gpu' not in gpu_check.skipped_cells('06_compression', cuda=True)

"""The `flatness-nb` command as a separate process, as a user runs it: `--factory` and pickled models found in the current
folder (a console script, unlike `python -m`, does not put it on sys.path), and bad arguments that end in one line, no
traceback, before any work. The in-process checks of every error are in nbs/09_cli.ipynb."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]
NET = textwrap.dedent("""
    import torch.nn as nn
    class Net(nn.Sequential):
        def __init__(self): super().__init__(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    def build_net(): return Net()
""")


def console(*args, cwd=ROOT):
    exe = shutil.which('flatness-nb', path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
    assert exe, 'the flatness-nb console script is not installed'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    if 'PYTHONPATH' in os.environ:   # keep a worktree's package visible, but never the current folder
        env['PYTHONPATH'] = os.pathsep.join(p for p in os.environ['PYTHONPATH'].split(os.pathsep) if p not in ('', '.'))
    return subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def project(tmp_path):
    "A user's folder: mypkg.py with build_net, its state_dict, the whole pickled model, and (X, y) data."
    (tmp_path / 'mypkg.py').write_text(NET)
    r = subprocess.run([sys.executable, '-c', textwrap.dedent("""
        import torch, mypkg
        torch.manual_seed(0); net = mypkg.build_net().double()
        torch.save(net.state_dict(), 'model.pt'); torch.save(net, 'whole.pt')
        torch.save((torch.rand(40, 64, dtype=torch.float64), torch.randint(0, 10, (40,))), 'data.pt')
    """)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return tmp_path


def test_factory_found_in_current_folder(project, tmp_path_factory):
    r = console('measure', 'model.pt', 'data.pt', '--factory', 'mypkg:build_net', '--quiet', cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[0] == '0' and r.stdout.splitlines()[2].split()[0] == '2'
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    r = console('measure', project / 'model.pt', project / 'data.pt', '--factory', 'mypkg:build_net', cwd=elsewhere)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"flatness-nb measure: error: cannot import factory 'mypkg:build_net': no module 'mypkg' in the current folder "
        f"({elsewhere}) or on sys.path"], r.stderr


def test_pickled_model_class_found_in_current_folder(project, tmp_path_factory):
    r = console('measure', 'whole.pt', 'data.pt', '--quiet', cwd=project)
    assert r.returncode == 0, r.stderr
    r = console('measure', project / 'whole.pt', project / 'data.pt', cwd=tmp_path_factory.mktemp('elsewhere'))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'holds a pickled model whose class cannot be imported' in r.stderr and 'Traceback' not in r.stderr


@pytest.mark.parametrize('args, want', [
    (('measure', 'whole.pt', 'data.pt', '--batch-size', '0'), 'argument --batch-size: must be ≥ 1, got 0'),
    (('measure', 'whole.pt', 'data.pt', '--out', 'mypkg.py'), "--out 'mypkg.py' is a file, not a folder"),
    (('measure', 'whole.pt', 'mypkg.py'), "'mypkg.py' is not a torch data file (torch.load failed"),
    (('measure', 'mypkg.py', 'data.pt'), "'mypkg.py' is not a torch model file (torch.load failed"),
    (('measure', 'whole.pt', 'data.pt', '--device', 'cuda:99'), '--device cuda:99'),
    (('demo', '--out', 'mypkg.py'), "--out 'mypkg.py' is a file, not a folder"),
    (('bench', '--out', '.'), "--out '.' is a folder, not a file"),
])
def test_bad_arguments_one_line(project, args, want):
    r = console(*args, cwd=project)
    assert r.returncode == 2 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'Traceback' not in r.stderr and r.stdout == ''


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_without_cuda(project):
    """The issue's case: `--device cuda` on a machine without CUDA was a 26-line traceback."""
    r = console('measure', 'whole.pt', 'data.pt', '--device', 'cuda', cwd=project)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        'flatness-nb measure: error: --device cuda: CUDA is not available here (' +
        ('this torch build has no CUDA' if torch.version.cuda is None else 'no CUDA GPU is visible') + '); use --device cpu']


TOK = textwrap.dedent("""
    import torch, torch.nn as nn
    class Tok(nn.Module):
        "A token classifier taking keyword inputs and returning a dict with 'logits', as Hugging Face models do."
        def __init__(self):
            super().__init__(); self.emb = nn.Embedding(20, 8); self.fc = nn.Linear(8, 3)
        def forward(self, input_ids, attention_mask):
            return {'logits': self.fc((self.emb(input_ids) * attention_mask[..., None]).mean(1))}
    def build(): return Tok().double()
""")


def test_dict_data_files(tmp_path):
    "A data file holding a Hugging Face dict with 'labels', or (dict of inputs, y): the same numbers as the library's."
    (tmp_path / 'tok.py').write_text(TOK)
    r = subprocess.run([sys.executable, '-c', textwrap.dedent("""
        import torch, tok
        from flatness_nb.hessian import layer_hessian_trace
        torch.manual_seed(0); m = tok.build().eval(); torch.save(m.state_dict(), 'm.pt')
        ids = torch.randint(0, 20, (40, 6)); mask = (torch.rand(40, 6) > 0.2).long(); y = torch.randint(0, 3, (40,))
        torch.save({'input_ids': ids, 'attention_mask': mask, 'labels': y}, 'hf.pt')
        torch.save(({'input_ids': ids, 'attention_mask': mask}, y), 'pair.pt')
        print(layer_hessian_trace(m, 'fc', ({'input_ids': ids, 'attention_mask': mask}, y)))
    """)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    want = float(r.stdout.split()[-1])
    for f in ('hf.pt', 'pair.pt'):
        out = console('measure', 'm.pt', f, '--factory', 'tok:build', '--layer', 'fc', '--out', f'o_{f}', '--quiet',
                      cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        [row] = json.loads((tmp_path / f'o_{f}' / 'measures.json').read_text())
        assert abs(row['trace'] - want) <= 1e-10 * abs(want), (row['trace'], want)

"""Checks that are awkward as notebook cells: the command-line entry points end to end, and that the exported
library is in sync with the notebooks (the notebooks are the source)."""
import json, os, subprocess, sys, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


def test_import_and_version():
    import flatness_nb
    from flatness_nb.flatness import relative_flatness
    from flatness_nb.hessian import layer_hessian_trace
    assert flatness_nb.__version__ and callable(relative_flatness) and callable(layer_hessian_trace)


def console(*args):
    exe = shutil.which('flatness-nb', path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
    assert exe, 'the flatness-nb console script is not installed'
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cli_demo_end_to_end(tmp_path):
    """`flatness-nb demo` as a user runs it: trains, measures, writes the report folder."""
    out = tmp_path / 'demo'
    r = console('demo', '--steps', '150', '--quick', '--out', str(out))   # the full demo runs in nbs/12_demo
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / 'report.json').read_text())
    assert 'κφ_Tr exact' in r.stdout and (out / 'demo.csv').exists() and (out / 'demo.png').stat().st_size > 1000
    # progress: each step on stderr with its time; the report on stdout, in sections, with the layers by name
    steps = [l for l in r.stderr.splitlines() if l.startswith('[')]
    assert [l[:5] for l in steps] == ['[1/4]', '[2/4]', '[3/4]', '[4/4]'] and r.stderr.count(' done in ') == 4, r.stderr
    assert 'training' in r.stderr and 'layers' in r.stderr                      # the tqdm bars of the two loops
    assert [l['layer'] for l in rep['layers']] == ['fc1', 'fc2', 'fc3'] and 'Each layer' in r.stdout and 'Sources' in r.stdout
    for l in rep['layers']:  # the report's exact value and its Hutchinson estimate agree
        assert abs(l['hutchinson'] - l['relative_flatness']) < 4 * l['hutchinson_se']


def test_cli_bad_input_is_one_line():
    r = console('measure', 'no_such_model.pt', 'digits')
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "flatness-nb measure: error: model file 'no_such_model.pt' does not exist"]


def test_benchmark_command_small(tmp_path):
    out = tmp_path / 'bench.json'
    r = run('-m', 'flatness_nb.benchmark', '--n', '60', '--batch-size', '30', '--no-memory', '--out', str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert set(rep['layers']) == {'fc1', 'fc2', 'fc3', 'conv2', 'conv1'}
    assert all(l['ours_over_tfb'] > 0 and l['speedup'] > 0 for l in rep['layers'].values())


def test_benchmark_memory_child_streams():
    """κ of fc2 on 100× more streamed samples needs no more memory: a stored data set (49 MB) or stored per-sample H^z
    (113 MB) at n = 4000 would show against the ~400 MB process."""
    from flatness_nb.benchmark import peak_memory_mb
    base = peak_memory_mb(40, batch_size=20, layer=None)
    small, large = peak_memory_mb(40, batch_size=20), peak_memory_mb(4000, batch_size=20)
    assert 50 < base <= small and large < small + 30, (base, small, large)


@pytest.mark.skipif(shutil.which('git') is None or not (ROOT / '.git').exists(), reason='needs a git checkout')
def test_library_in_sync_with_notebooks(tmp_path):
    """nbdev_export on a copy of the repo must not change flatness_nb/: nobody edited the .py files by hand."""
    dst = tmp_path / 'repo'
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns('.venv', '.git', '_proc', '_docs', '__pycache__'))
    exe = shutil.which('nbdev_export', path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')]))
    assert exe, 'nbdev_export not found'
    r = subprocess.run([exe], cwd=dst, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in sorted((ROOT / 'flatness_nb').glob('*.py')):
        if f.name == '_modidx.py': continue  # nbdev's symbol index, rebuilt on export; not a source of behaviour
        assert (dst / 'flatness_nb' / f.name).read_text() == f.read_text(), f'{f.name} differs from its notebook'


def test_readme_in_step_with_index():
    """README.md is the markdown of nbs/index.ipynb (written by tools/readme.py, since nbdev_readme needs Quarto)."""
    r = run(str(ROOT / 'tools' / 'readme.py'), '--check')
    assert r.returncode == 0, r.stdout + r.stderr

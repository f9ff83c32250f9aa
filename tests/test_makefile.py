"""The quick start's plumbing: which Python `make` uses (the project environment .venv outside an environment, the
active one inside), which torch it installs from where, and that the README, the Makefile and CI say the same thing."""
import os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
CPU_INDEX = 'https://download.pytorch.org/whl/cpu'


def make(*args, env=None):
    "`make ARGS` in the repo root, with VIRTUAL_ENV unset so that only PY decides (as for a user outside an env)."
    e = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX', 'MAKEFLAGS', 'MAKELEVEL')}
    return subprocess.run(['make', '--no-print-directory', *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**e, **(env or {})})


def base_python():
    "The interpreter this environment was made from (a Python outside any virtual environment), or None."
    if (Path(sys.base_prefix) / 'conda-meta').exists(): return None
    for name in (f'python{sys.version_info.major}.{sys.version_info.minor}', 'python3'):
        p = Path(sys.base_prefix) / 'bin' / name
        if p.exists(): return str(p)


def test_inside_an_environment_uses_it():
    """PY inside a virtual environment (this test's own, in CI and under `make test`): no .venv, installs go there."""
    if sys.prefix == sys.base_prefix: pytest.skip('pytest does not run inside a virtual environment')
    r = make('-n', 'demo', f'PY={sys.executable}')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not any('-m venv' in l for l in lines), r.stdout
    assert lines[0] == f'{sys.executable} -m pip install -q "torch==2.13.0"', lines
    assert lines[-1] == f'{sys.executable} -m flatness_nb.demo', lines


def test_outside_an_environment_creates_dot_venv():
    """A system Python (PEP 668 refuses its pip installs): make creates .venv with it and runs everything from .venv."""
    py = base_python()
    if py is None: pytest.skip('no base interpreter outside an environment')
    r = make('-n', 'test', f'PY={py}')
    assert r.returncode == 0, r.stderr
    venv_py = f'{ROOT}/.venv/bin/python'
    assert f'{py} -m venv "{ROOT}/.venv"' in r.stdout or (ROOT / '.venv' / 'bin' / 'python').exists(), r.stdout
    pips = [l for l in r.stdout.splitlines() if ' -m pip install' in l]
    assert pips and all(l.startswith(venv_py + ' ') for l in pips), r.stdout
    assert f'{venv_py} -m pytest tests -q' in r.stdout
    r = make('-n', 'install', f'PY={py}', 'VENV=')              # VENV= turns the project environment off
    assert r.returncode == 0 and f'{py} -m pip install -q -e ".[dev]"' in r.stdout, r.stdout + r.stderr


def test_venv_creation_for_real(tmp_path):
    """The rule that creates the environment works with this Python (its venv module is there), and a failure says what
    to install and leaves no half-made environment behind."""
    py = base_python()
    if py is None: pytest.skip('no base interpreter outside an environment')
    v = tmp_path / 'v'
    r = make(f'{v}/bin/python', f'PY={py}', f'VENV={v}')
    assert r.returncode == 0 and (v / 'bin' / 'python').exists() and (v / 'pyvenv.cfg').exists(), r.stdout + r.stderr
    bad = tmp_path / 'bad'
    r = make('install', 'PY=/nonexistent/python3', f'VENV={bad}')
    assert r.returncode != 0 and 'could not create' in r.stdout and 'apt install python3-venv' in r.stdout, r.stdout
    assert not bad.exists()


def test_torch_index_and_keeping_your_torch():
    r = make('-n', 'install', f'PY={sys.executable}', f'TORCH_INDEX={CPU_INDEX}')
    assert f'-m pip install -q "torch==2.13.0" --index-url {CPU_INDEX}' in r.stdout, r.stdout + r.stderr
    r = make('-n', 'install', f'PY={sys.executable}', 'TORCH=')
    assert r.returncode == 0 and 'torch' not in r.stdout and '-e ".[dev]"' in r.stdout, r.stdout


def test_readme_makefile_and_ci_agree():
    """The README's quick start is what the Makefile does and what CI runs."""
    readme, mk, ci = (ROOT / 'README.md').read_text(), (ROOT / 'Makefile').read_text(), (ROOT / '.ci' / 'run').read_text()
    quick = readme[readme.index('## Quick start'):readme.index('## Use')]
    assert 'Python ≥ 3.10' in quick and 'python3-venv' in quick and '.venv' in quick
    assert f'TORCH_INDEX={CPU_INDEX}' in quick and f'CPU_INDEX := {CPU_INDEX}' in mk and 'TORCH=' in quick
    assert re.search(r'^TORCH \?= torch==2\.13\.0$', mk, re.M) and 'torch==2.13.0' in quick
    assert re.search(r'^make demo\b', quick, re.M) and re.search(r'^make test\b', quick, re.M)
    assert re.search(r'^make test$', ci, re.M), 'CI must run the README test command as written'

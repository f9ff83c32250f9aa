"""One prepared device check: the notebooks and pytest on the device named by FLATNESS_DEVICE, then the benchmark.

Usage:  python tools/gpu_check.py                    # CUDA (refused with a clear message when there is none)
        python tools/gpu_check.py --quick            # theorem notebooks + the tiny side-by-side benchmark only
        python tools/gpu_check.py --device cpu       # the same steps on the CPU (slower: a dry run of the script)
Every notebook is its own step (nbdev_test takes one --path, so one call per notebook is the only way none is dropped).
Steps come in groups in order of importance (theorem notebooks, benchmark, other notebooks, pytest); each group has a
share of one overall time limit (8 minutes by default), and time a group leaves unused passes to the next, so a lent GPU
is used in one short run. At the end a table says what ran, on which device, how long it took, how it ended and which
cells were skipped (`slow` cells always; `gpu` cells on the CPU); a step that did not run is listed with the reason.
`--out` keeps the table as JSON.
"""
from __future__ import annotations
import argparse, json, os, re, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THEOREMS = ['02_relative_flatness', '03_feature_robustness', '05_representativeness', '06_compression', '01_hessian']
SHARES = {'theorem notebooks': 0.35, 'benchmark': 0.30, 'other notebooks': 0.25, 'pytest': 0.10}
QUICK_SHARES = {'theorem notebooks': 0.60, 'benchmark': 0.40}

def cell_flags(nb: str) -> dict[str, int]:
    "How many code cells of notebook `nb` carry the `slow` and the `gpu` flag."
    cells = json.loads((ROOT / 'nbs' / f'{nb}.ipynb').read_text())['cells']
    first = [''.join(c['source']).split('\n', 1)[0] for c in cells if c['cell_type'] == 'code']
    return {f: sum(bool(re.match(rf'#\|\s*{f}\b', l)) for l in first) for f in ('slow', 'gpu')}

def skipped_cells(nb: str, cuda: bool) -> str:
    "What nbdev_test leaves out of notebook `nb` in this run, in words ('' when nothing)."
    n = cell_flags(nb)
    out = [f"{n['slow']} slow"] if n['slow'] else []
    if n['gpu'] and not cuda: out.append(f"{n['gpu']} gpu (CPU run)")
    return ', '.join(out) + ' cell(s) skipped' if out else ''

def notebooks(quick: bool) -> dict[str, list[str]]:
    "The notebooks of each group: the theorem chapters first, then every other numbered notebook."
    rest = sorted(p.stem for p in (ROOT / 'nbs').glob('[0-9]*.ipynb') if p.stem not in THEOREMS)
    return {'theorem notebooks': THEOREMS} | ({} if quick else {'other notebooks': rest})

def steps(device: str, bench_n: int, quick: bool, out_dir: Path) -> list[dict]:
    "Every step as a dict(group, step, cmd, skipped) in the order it runs."
    cuda = device.startswith('cuda')
    nb = lambda n: ['nbdev_test', '--n_workers', '1', '--path', f'nbs/{n}.ipynb'] + (['--flags', 'gpu'] if cuda else [])
    groups = notebooks(quick)
    bench = [sys.executable, '-m', 'flatness_nb.benchmark', '--device', device]
    rows = [dict(group='theorem notebooks', step=n, cmd=nb(n), skipped=skipped_cells(n, cuda)) for n in groups['theorem notebooks']]
    if not quick:
        rows.append(dict(group='benchmark', step='benchmark LeNet5 vs dense', skipped='',
                         cmd=bench + ['--n', str(bench_n), '--out', str(out_dir / 'bench_lenet5.json')]))
    rows.append(dict(group='benchmark', step='benchmark models' + (' (tiny)' if quick else ''), skipped='',
                     cmd=bench + ['--models', 'all'] + (['--tiny'] if quick else []) + ['--out', str(out_dir / 'bench_models.json')]))
    rows += [dict(group='other notebooks', step=n, cmd=nb(n), skipped=skipped_cells(n, cuda)) for n in groups.get('other notebooks', [])]
    if not quick: rows.append(dict(group='pytest', step='pytest tests', cmd=[sys.executable, '-m', 'pytest', 'tests', '-q'], skipped=''))
    return rows

def run_step(cmd: list[str], env: dict, limit: float) -> tuple[str, float, str]:
    "Run one step under its time limit: (outcome, seconds, last lines of output)."
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)   # its own process group: a timeout stops the notebook kernels too
    try:
        out = p.communicate(timeout=limit)[0]
        outcome = 'passed' if p.returncode == 0 else f'failed (exit {p.returncode})'
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, outcome = p.communicate()[0], f'stopped at its {limit:.0f} s limit'
    return outcome, time.time() - t0, '\n'.join((out or '').strip().splitlines()[-15:])

def run_all(rows: list[dict], shares: dict[str, float], limit: float, env: dict, device: str) -> list[dict]:
    "Run the steps group by group, each group within its share of `limit` plus what earlier groups left unused."
    t_start, carry = time.time(), 0.0
    for g in shares:
        t_group, budget = time.time(), shares[g] * limit + carry
        for r in (r for r in rows if r['group'] == g):
            left = min(budget - (time.time() - t_group), limit - (time.time() - t_start))
            r['device'] = device
            if left < 10:
                r.update(outcome=f"not run: the {g} group's time was used up", seconds=0.0); print(f"[{r['step']}] {r['outcome']}", flush=True); continue
            r['outcome'], secs, r['tail'] = run_step(r['cmd'], env, left)
            r['seconds'] = round(secs, 1)
            print(f"[{r['step']}] on {device}: {r['outcome']} in {secs:.0f} s" + (f"; {r['skipped']}" if r['skipped'] else ''), flush=True)
            if r['outcome'] != 'passed': print(r['tail'], flush=True)
        carry = max(0.0, budget - (time.time() - t_group))
    return rows

def table(rows: list[dict]) -> str:
    "The summary: step, device, seconds, outcome, skipped cells."
    w = max(len(r['step']) for r in rows)
    lines = [f"{'step':{w}s}  {'device':8s} {'seconds':>7s}  outcome"]
    for r in rows:
        lines.append(f"{r['step']:{w}s}  {r['device']:8s} {r['seconds']:7.0f}  {r['outcome']}" + (f"; {r['skipped']}" if r['skipped'] else ''))
    return '\n'.join(lines)

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda', help="cuda (default), cuda:N or cpu")
    p.add_argument('--quick', action='store_true', help="only the theorem notebooks and the tiny side-by-side benchmark")
    p.add_argument('--limit', type=float, default=None, help="overall time limit in seconds (default 480; 300 with --quick)")
    p.add_argument('--bench-n', type=int, default=2000, help="samples of the LeNet5 benchmark (default 2000)")
    p.add_argument('--out', default=None, help="write the summary table as JSON here")
    a = p.parse_args(argv)
    limit = a.limit or (300.0 if a.quick else 480.0)
    import torch
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        print(f"make test-gpu: CUDA is not available here (torch {torch.__version__}); nothing ran. "
              "Run the same steps on the CPU with `python tools/gpu_check.py --device cpu`, or on a GPU machine.")
        return 2
    where = torch.cuda.get_device_name(torch.device(a.device)) if a.device.startswith('cuda') else 'CPU'
    print(f"device check on {a.device} ({where}), torch {torch.__version__}, {'quick, ' if a.quick else ''}"
          f"overall limit {limit:.0f} s", flush=True)
    out_dir = Path(os.environ.get('OUT') or '.')
    env = dict(os.environ, FLATNESS_DEVICE=a.device, PYTHONPATH=str(ROOT))
    rows = run_all(steps(a.device, a.bench_n, a.quick, out_dir), QUICK_SHARES if a.quick else SHARES, limit, env, a.device)
    print('\n' + table(rows))
    if a.out:
        keep = [{k: v for k, v in r.items() if k != 'cmd'} | dict(cmd=' '.join(r['cmd'])) for r in rows]
        Path(a.out).write_text(json.dumps(dict(device=a.device, name=where, torch=torch.__version__, quick=a.quick,
                                               limit_s=limit, steps=keep), indent=1))
    return 0 if all(r['outcome'] == 'passed' for r in rows) else 1

if __name__ == '__main__': sys.exit(main())

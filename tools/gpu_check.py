"""One prepared device check: every notebook and pytest on the device named by FLATNESS_DEVICE, then the benchmark.

Usage:  python tools/gpu_check.py                 # CUDA (refused with a clear message when there is none)
        python tools/gpu_check.py --device cpu    # the same steps on the CPU (slower: a dry run of the script)
Each step has its own time limit inside one overall limit (8 minutes by default), so a lent GPU is used in one short run;
at the end a table says what ran, where, how long it took and how it ended, and `--out` keeps it as JSON.
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THEOREMS = ['02_relative_flatness', '03_feature_robustness', '05_representativeness', '06_compression', '01_hessian']

def _steps(device: str, bench_n: int) -> list[tuple[str, list[str], float]]:
    "The steps in order of importance: (name, command, share of the overall time)."
    flags = ['--flags', 'gpu'] if device.startswith('cuda') else []  # `gpu` cells need CUDA; on the CPU they are skipped
    nb = lambda names: ['nbdev_test', '--n_workers', '1', '--do_print'] + flags + \
                       sum((['--path', f'nbs/{n}.ipynb'] for n in names), [])
    rest = sorted(p.stem for p in (ROOT / 'nbs').glob('[0-9]*.ipynb') if p.stem not in THEOREMS)
    return [('theorem notebooks', nb(THEOREMS), 0.35),
            ('benchmark', [sys.executable, '-m', 'flatness_nb.benchmark', '--device', device, '--n', str(bench_n),
                           '--out', str(Path(os.environ.get('OUT', '.')) / 'bench_gpu.json')], 0.30),
            ('other notebooks', nb(rest), 0.25),
            ('pytest', [sys.executable, '-m', 'pytest', 'tests', '-q', '-x'], 0.10)]

def _run(cmd: list[str], env: dict, limit: float) -> tuple[str, float, str]:
    "Run one step under its time limit: (outcome, seconds, last lines of output)."
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        out, rc = p.stdout + p.stderr, p.returncode
        outcome = 'passed' if rc == 0 else f'failed (exit {rc})'
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        outcome = f'stopped at its {limit:.0f} s limit'
    return outcome, time.time() - t0, '\n'.join(out.strip().splitlines()[-15:])

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda', help="cuda (default), cuda:N or cpu")
    p.add_argument('--limit', type=float, default=480, help="overall time limit in seconds (default 480)")
    p.add_argument('--bench-n', type=int, default=2000, help="samples of the benchmark (default 2000)")
    p.add_argument('--out', default=None, help="write the summary table as JSON here")
    a = p.parse_args(argv)
    import torch
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        print(f"make test-gpu: CUDA is not available here (torch {torch.__version__}); nothing ran. "
              "Run the same steps on the CPU with `python tools/gpu_check.py --device cpu`, or on a GPU machine.")
        return 2
    where = torch.cuda.get_device_name(0) if a.device.startswith('cuda') else 'CPU'
    print(f"device check on {a.device} ({where}), torch {torch.__version__}, overall limit {a.limit:.0f} s", flush=True)
    env = dict(os.environ, FLATNESS_DEVICE=a.device, PYTHONPATH=str(ROOT))
    rows, t_start = [], time.time()
    for name, cmd, share in _steps(a.device, a.bench_n):
        left = a.limit - (time.time() - t_start)
        if left < 10:
            rows.append(dict(step=name, device=a.device, outcome='not run: overall limit reached', seconds=0.0)); continue
        outcome, secs, tail = _run(cmd, env, min(left, max(share * a.limit, 30)))
        rows.append(dict(step=name, device=a.device, outcome=outcome, seconds=round(secs, 1), tail=tail))
        print(f"[{name}] on {a.device}: {outcome} in {secs:.0f} s", flush=True)
        if outcome != 'passed': print(tail, flush=True)
    print('\nstep                 device   seconds  outcome')
    for r in rows: print(f"{r['step']:20s} {r['device']:8s} {r['seconds']:7.0f}  {r['outcome']}")
    if a.out: Path(a.out).write_text(json.dumps(dict(device=a.device, name=where, torch=torch.__version__, steps=rows), indent=1))
    return 0 if all(r['outcome'] == 'passed' for r in rows) else 1

if __name__ == '__main__': sys.exit(main())

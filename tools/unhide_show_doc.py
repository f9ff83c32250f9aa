"""Make every cell whose code only calls show_doc(...) visible, one call per cell, in the notebooks given (default: all
of nbs/). A `#| hide` line is removed from such cells; a cell with several show_doc calls (a notebook shows only the last
one) becomes one cell per call. Other cells, and other directives, are left alone. Idempotent: a second run changes
nothing.

    python tools/unhide_show_doc.py [NOTEBOOK ...]
"""
import json, re, sys, uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')
CALL = re.compile(r'^\s*show_doc\(.*\)\s*(#.*)?$')


def is_show_doc(lines):
    "True when the code lines (directives aside) are only show_doc(...) calls."
    code = [l for l in lines if l.strip() and not DIRECTIVE.match(l)]
    return bool(code) and all(CALL.match(l) for l in code)


def fix_cell(cell):
    "The cell(s) that replace `cell`: unhidden, one show_doc call each."
    if cell['cell_type'] != 'code': return [cell]
    lines = ''.join(cell['source']).splitlines()
    if not is_show_doc(lines): return [cell]
    keep = [l for l in lines if DIRECTIVE.match(l) and DIRECTIVE.match(l).group(1).strip() != 'hide']
    calls = [l for l in lines if l.strip() and not DIRECTIVE.match(l)]
    if len(keep) == sum(bool(DIRECTIVE.match(l)) for l in lines) and len(calls) == 1: return [cell]  # already visible
    out = []
    for i, call in enumerate(calls):
        src = '\n'.join(keep + [call])
        c = dict(cell, source=src.splitlines(keepends=True), outputs=[] if len(calls) > 1 else cell.get('outputs', []))
        if i and 'id' in cell: c['id'] = uuid.uuid4().hex[:8]
        out.append(c)
    return out


def fix(path):
    "Rewrite notebook `path` in place; returns the number of cells changed."
    nb = json.loads(Path(path).read_text())
    new = [fix_cell(c) for c in nb['cells']]
    changed = sum(len(n) != 1 or n[0] is not c for n, c in zip(new, nb['cells']))
    if changed:
        nb['cells'] = [c for n in new for c in n]
        Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return changed


def main(argv=None):
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])] or sorted((ROOT / 'nbs').rglob('*.ipynb'))
    for p in paths:
        if '.ipynb_checkpoints' in p.parts: continue
        n = fix(p)
        if n: print(f'{p}: show_doc cells made visible ({n} changed)')


if __name__ == '__main__':
    main()

"""Build the documentation site into _docs/.

With Quarto on PATH this is nbdev's own build (`nbdev_docs`). Quarto cannot be installed everywhere (its PyPI package
downloads a binary), so otherwise the notebooks are executed with execnb (skipping cells flagged `slow`/`gpu` or
`eval: false`, as nbdev_test does), processed like nbdev does for docs (`#| hide` cells dropped, directive lines removed)
and rendered to HTML with nbconvert, with MathJax served from a local copy (Debian's libjs-mathjax) so the pages typeset
offline. Every page gets the same sidebar: Theory, Library, Paper reproductions.

    python tools/build_docs.py [--only NAME ...] [--out _docs]
"""
import argparse, html, os, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
GROUPS = {  # sidebar: notebook stems by section (missing notebooks are skipped)
    'Theory': ['01_hessian', '02_relative_flatness', '03_feature_robustness', '05_representativeness', '06_compression'],
    'Library': ['00_core', '04_data', '07_measures', '08_experiments', '09_cli', '10_distributed', '11_benchmark', '12_demo'],
    'Paper reproductions': ['paper/*'],
}
MATHJAX_DIRS = ['/usr/share/javascript/mathjax', '/usr/share/nodejs/mathjax']
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')


def notebooks():
    "All notebooks in sidebar order, plus index, as (stem, path)."
    out = [('index', NBS / 'index.ipynb')]
    for stems in GROUPS.values():
        for s in stems:
            paths = sorted(NBS.glob(s + '.ipynb'))
            out += [(p.relative_to(NBS).with_suffix('').as_posix(), p) for p in paths]
    return out


def directives(src):
    "The cell's `#|` directive lines as a dict {name: value}."
    d = {}
    for line in src.splitlines():
        m = DIRECTIVE.match(line)
        if not m:
            if line.strip(): break
            continue
        k, _, v = m.group(1).partition(':') if ':' in m.group(1) else (m.group(1), '', '')
        d[k.strip()] = v.strip()
    return d


def execute(path, skip_flags=('slow', 'gpu')):
    "Execute a notebook with execnb; returns the executed notebook (flagged cells are not run)."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    nb = read_nb(path)
    def skip(cell):
        if cell.cell_type != 'code': return False
        d = directives(cell.source)
        return d.get('eval', '').lower() == 'false' or any(f in d for f in skip_flags)
    cwd = os.getcwd(); os.chdir(path.parent)
    try: CaptureShell(path=path.parent).run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd)
    return nb


def process(nb):
    "Drop hidden cells and directive lines, as nbdev does for docs."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            d = directives(c.source)
            if 'hide' in d or 'default_exp' in d: continue
            c.source = '\n'.join(l for l in c.source.splitlines() if not DIRECTIVE.match(l)).strip('\n')
            if not c.source and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    return nb


def sidebar(pages, here):
    "HTML of the sidebar for page `here`."
    depth = here.count('/')
    up = '../' * depth
    items = [f'<p><a href="{up}index.html"><b>flatness_nb</b></a></p>']
    for group, stems in GROUPS.items():
        links = [s for s in pages if any(Path(s).match(g) for g in stems)]
        if not links: continue
        items.append(f'<h4>{html.escape(group)}</h4><ul>')
        items += [f'<li><a href="{up}{s}.html"{" class=current" if s == here else ""}>{html.escape(pages[s])}</a></li>'
                  for s in links]
        items.append('</ul>')
    return ('<nav id="fnb-sidebar" style="position:fixed;top:0;left:0;width:230px;height:100%;overflow:auto;'
            'padding:12px;border-right:1px solid #ddd;background:#fafafa;font-size:14px">' + ''.join(items) + '</nav>')


def title_of(nb, stem):
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return stem


def render(pages_nbs, out):
    "Render executed+processed notebooks to HTML pages in `out`."
    import nbformat
    from nbconvert import HTMLExporter
    from execnb.nbio import nb2str
    titles = {s: title_of(nb, s) for s, nb in pages_nbs.items()}
    for stem, nb in pages_nbs.items():
        node = nbformat.reads(nb2str(nb), as_version=4)
        ex = HTMLExporter(template_name='classic')
        depth = stem.count('/')
        ex.mathjax_url = '../' * depth + 'mathjax/MathJax.js?config=TeX-AMS_CHTML'
        body, _ = ex.from_notebook_node(node, resources={'metadata': {'name': titles[stem]}})
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + sidebar(titles, stem) + '<div style="margin-left:250px">',
                      body, count=1).replace('</body>', '</div></body>')
        dest = out / f'{stem}.html'; dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)


def copy_mathjax(out):
    src = next((Path(d) for d in MATHJAX_DIRS if (Path(d) / 'MathJax.js').exists()), None)
    if src is None:
        sys.exit("MathJax not found: install Debian's libjs-mathjax (apt-get install libjs-mathjax) to typeset offline")
    if not (out / 'mathjax').exists(): shutil.copytree(src, out / 'mathjax', ignore=shutil.ignore_patterns('unpacked', 'test'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--only', nargs='*', help='notebook stems to build (default: all)')
    p.add_argument('--out', default=str(ROOT / '_docs'))
    a = p.parse_args(argv)
    if shutil.which('quarto') and not a.only:
        sys.exit(subprocess.call(['nbdev_docs'], cwd=ROOT))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out)
    pages = {}
    for stem, path in notebooks():
        if a.only and stem not in a.only: continue
        print(f'executing {stem}', flush=True)
        pages[stem] = process(execute(path))
    render(pages, out)
    print(f'wrote {len(pages)} pages to {out}')


if __name__ == '__main__':
    main()

"""Build the documentation site into _docs/.

With Quarto on PATH this is nbdev's own build (`nbdev_docs`). Quarto cannot be installed everywhere (its PyPI package
downloads a binary), so otherwise the site is built with Sphinx, myst-nb and the Furo theme, all from PyPI and fully
offline: the notebooks are executed in-process with execnb (cells flagged `slow`/`gpu` or `eval: false` are skipped, as
nbdev_test does, and get a one-line note unless they carry a recorded output), processed as nbdev does for docs (`#| hide`
cells dropped, directive lines removed, `show_doc` cells shown by their output only, rendered as a signature and a
parameter table), and rendered by Sphinx with MathJax served from a local copy (Debian's libjs-mathjax). The sidebar
comes from one source, nbs/sidebar.yml, which Quarto reads too. Sphinx's own search works offline.

    python tools/build_docs.py [--only NAME ...] [--exec all|api [--full NAME ...]] [--out _docs]

`--exec api` runs only the cells a page's API docs need (exports, imports, `show_doc`): a quick structural build for tests.
"""
import argparse, html, inspect, textwrap, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
MATHJAX_DIRS = ['/usr/share/javascript/mathjax', '/usr/share/nodejs/mathjax']
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')
SHOW_DOC_LINE = re.compile(r'^\s*show_doc\(.*\)\s*(#.*)?$')
SKIP_FLAGS = ('slow', 'gpu')


# ---------------------------------------------------------------- the sidebar, from nbs/sidebar.yml only
def sidebar_sections(path=NBS / 'sidebar.yml'):
    "Sidebar of the site as [(section title or None, [stem, ...])], read from `path` (the file Quarto reads)."
    import yaml
    def stems(entries):
        out = []
        for e in entries:
            if isinstance(e, str): out.append(e)
            elif isinstance(e, dict) and 'auto' in e:
                out += sorted(p.relative_to(NBS).as_posix() for p in NBS.glob(e['auto']))
            elif isinstance(e, dict) and 'href' in e: out.append(e['href'])
        return [re.sub(r'\.(ipynb|qmd|md)$', '', s) for s in out]
    sections, loose = [], []
    for e in yaml.safe_load(path.read_text())['website']['sidebar']['contents']:
        if isinstance(e, dict) and 'section' in e: sections.append((e['section'], stems(e.get('contents', []))))
        else: loose += stems([e])
    return ([(None, loose)] if loose else []) + sections


def notebooks():
    "All notebooks in sidebar order as (stem, path); index first."
    seen, out = set(), []
    for _, stems in sidebar_sections():
        for s in stems:
            p = NBS / f'{s}.ipynb'
            if s in seen: continue
            if not p.exists(): sys.exit(f'nbs/sidebar.yml lists {s}.ipynb, which does not exist: fix nbs/sidebar.yml')
            seen.add(s); out.append((s, p))
    return sorted(out, key=lambda sp: sp[0] != 'index')


def unlisted():
    "Notebooks in nbs/ that nbs/sidebar.yml does not list (they would be missing from the site)."
    listed = {s for _, ss in sidebar_sections() for s in ss}
    return sorted(p.relative_to(NBS).with_suffix('').as_posix() for p in NBS.rglob('*.ipynb')
                  if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_')
                  and p.relative_to(NBS).with_suffix('').as_posix() not in listed)


# ---------------------------------------------------------------- cells
def directives(src):
    "The cell's leading `#|` directive lines as a dict {name: value}."
    d = {}
    for line in src.splitlines():
        m = DIRECTIVE.match(line)
        if not m:
            if line.strip(): break
            continue
        k, _, v = m.group(1).partition(':')
        d[k.strip()] = v.strip()
    return d


def body(src):
    "The cell's code without directive lines."
    return '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l)).strip('\n')


def is_show_doc(src):
    "True when the cell's code only calls show_doc(...)."
    lines = [l for l in body(src).splitlines() if l.strip()]
    return bool(lines) and all(SHOW_DOC_LINE.match(l) for l in lines)


def split_show_doc(nb):
    "A cell with several show_doc calls shows only the last one: give each call its own cell."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code' and is_show_doc(c.source):
            d = [l for l in c.source.splitlines() if DIRECTIVE.match(l)]
            calls = [l for l in body(c.source).splitlines() if l.strip()]
            for call in calls:
                n = c.copy(); n.source = '\n'.join(d + [call]); n.outputs = list(c.get('outputs', [])) if len(calls) == 1 else []
                cells.append(n)
        else: cells.append(c)
    nb.cells = cells
    return nb


def runs(cell, mode):
    "Whether the docs build executes this code cell: `all` (as nbdev_test) or `api` (exports and show_doc)."
    d = directives(cell.source)
    if d.get('eval', '').lower() == 'false' or any(f in d for f in SKIP_FLAGS): return False
    return mode == 'all' or 'export' in d or 'exports' in d or is_show_doc(cell.source)


def imports(src):
    "The top-level import statements of a cell, as code (empty when it does not parse)."
    import ast
    try: tree = ast.parse(body(src))
    except SyntaxError: return ''
    return '\n'.join(ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))


# ---------------------------------------------------------------- show_doc as signature + parameter table
def _md_inline(s):
    "Escape `s` for HTML, with `code` spans and $maths$ (or unicode like κ^φ_Tr) kept for MathJax."
    s = html.escape(tex_titles(str(s), greek_only=True), quote=False)
    s = re.sub(r'`([^`]+)`', r'<code>\1</code>', s)
    return re.sub(r'\$([^$]+)\$', r'<span class="math notranslate nohighlight">\\(\1\\)</span>', s)


def _default(v):
    "A default value as code: functions and classes by name (no memory address)."
    return getattr(v, '__name__', None) or repr(v) if callable(v) else repr(v)


def _anno(a):
    if a is inspect.Parameter.empty or a is None: return ''
    return a if isinstance(a, str) else inspect.formatannotation(a)


class DocHTML:
    "What `show_doc(sym)` displays in this docs build: a heading, the signature, the docstring and a parameter table."
    def __init__(self, sym, renderer=None, name=None, title_level=3, **kw):
        self.sym, self.lvl = sym, min(max(int(title_level), 2), 6)
        self.name = name or getattr(sym, '__qualname__', None) or getattr(sym, '__name__', None) or repr(sym)

    def _sig(self):
        "The call signature without annotations (the table has the types): one line, or one parameter a line."
        try: sig = inspect.signature(self.sym)
        except (TypeError, ValueError):
            if not inspect.isclass(self.sym): return None
            return f'class {self.name}({", ".join(b.__name__ for b in self.sym.__bases__)})'
        ps, star = [], False
        for p in sig.parameters.values():
            if p.name == 'self': continue
            if p.kind == p.VAR_POSITIONAL: star = True
            if p.kind == p.KEYWORD_ONLY and not star: ps.append('*'); star = True
            ps.append(str(p.replace(annotation=p.empty, default=p.empty))
                      + ('' if p.default is p.empty else '=' + _default(p.default)))
        ret = ' -> ' + _anno(sig.return_annotation) if _anno(sig.return_annotation) else ''
        return textwrap.fill(f'{self.name}({", ".join(ps)}){ret}', 88, subsequent_indent=' ' * (len(self.name) + 1),
                             break_long_words=False, break_on_hyphens=False)

    def _rows(self):
        "(name, annotation, default, docment) per parameter and for the return value, from the signature and docments."
        from fastcore.docments import docments
        try: sig = inspect.signature(self.sym)
        except (TypeError, ValueError): return []
        try: dm = docments(self.sym, full=True, returns=True)
        except Exception: dm = {}
        doc = lambda k: (dm.get(k) or {}).get('docment') or ''
        rows = [(p.name, _anno(p.annotation), '' if p.default is p.empty else _default(p.default), doc(p.name))
                for p in sig.parameters.values() if p.name != 'self']
        if _anno(sig.return_annotation) or doc('return'): rows.append(('returns', _anno(sig.return_annotation), '', doc('return')))
        return rows

    def _repr_html_(self):
        from fastcore.docments import docstring
        h = f'h{self.lvl}'
        anchor = re.sub(r'[^A-Za-z0-9_.-]', '-', self.name)
        out = [f'<div class="fnb-doc"><{h} class="fnb-doc-name" id="{anchor}"><code>{html.escape(self.name)}</code></{h}>']
        sig = self._sig()
        if sig: out.append(f'<pre class="fnb-sig"><code>{html.escape(sig)}</code></pre>')
        doc = (docstring(self.sym) or '').strip()
        if doc: out += [f'<p class="fnb-docstring">{_md_inline(p)}</p>' for p in re.split(r'\n\s*\n', doc)]
        rows = self._rows()
        if any(r[1] or r[2] or r[3] for r in rows):
            out.append('<table class="fnb-params"><thead><tr><th>Parameter</th><th>Type</th><th>Default</th><th>Details</th>'
                       '</tr></thead><tbody>')
            out += [f'<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(a)}</code></td>'
                    f'<td><code>{html.escape(d)}</code></td><td>{_md_inline(t)}</td></tr>' for k, a, d, t in rows]
            out.append('</tbody></table>')
        return '\n'.join(out) + '</div>'

    def __repr__(self): return f'show_doc({self.name})'


# ---------------------------------------------------------------- maths in titles and subtitles
GREEK = dict(zip('αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩ',
                 r'\alpha \beta \gamma \delta \epsilon \zeta \eta \theta \iota \kappa \lambda \mu \nu \xi \pi \rho \sigma '
                 r'\tau \upsilon \phi \chi \psi \omega \Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma \Phi \Psi \Omega'.split()))
PSEUDO_TEX = re.compile(r'(?<![\w$\\])([A-Za-z' + ''.join(GREEK) + r'])((?:[\^_](?:[A-Za-z0-9' + ''.join(GREEK) + r']+))+)(?![\w$])')


def tex_titles(md, greek_only=False):
    "Title/subtitle text with unicode sub/superscripts (κ^φ_Tr) written as $\\kappa^{\\phi}_{Tr}$, outside `code` and $maths$."
    def conv(m):
        if greek_only and m.group(1) not in GREEK: return m.group(0)
        base = GREEK.get(m.group(1), m.group(1))
        scripts = re.findall(r'([\^_])([^\^_]+)', m.group(2))
        def arg(a):  # a multi-letter Latin script is a name (Tr, emp, max): upright
            if len(a) > 1 and a.isascii() and a.isalpha(): return rf'\mathrm{{{a}}}'
            return ''.join(GREEK.get(ch, ch) + (' ' if ch in GREEK else '') for ch in a).strip()
        tex = base + ''.join(f'{op}{{{arg(a)}}}' for op, a in scripts)
        return f'${tex}$'
    parts = re.split(r'(`[^`]*`|\$\$.*?\$\$|\$[^$]*\$)', md, flags=re.S)
    return ''.join(p if i % 2 else PSEUDO_TEX.sub(conv, p) for i, p in enumerate(parts))


# ---------------------------------------------------------------- execute and process one notebook
def execute(path, mode='all'):
    "Execute a notebook in-process with execnb; cells that `runs` rejects are left as they are."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    import nbdev.showdoc
    nb = split_show_doc(read_nb(path))
    real = nbdev.showdoc.BasicMarkdownRenderer
    nbdev.showdoc.BasicMarkdownRenderer = DocHTML  # show_doc looks its default renderer up at call time
    shell = CaptureShell(path=path.parent)
    def skip(c):  # a cell not run still brings its imports in `api` mode (show_doc and later exports need them)
        if c.cell_type != 'code' or runs(c, mode): return c.cell_type != 'code'
        if mode == 'api' and imports(c.source): shell.run(imports(c.source))
        return True
    cwd = os.getcwd(); os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd); nbdev.showdoc.BasicMarkdownRenderer = real
    return nb


def note(text):
    return {'output_type': 'display_data', 'metadata': {},
            'data': {'text/html': f'<p class="fnb-note">{text}</p>', 'text/plain': re.sub('<[^>]+>', '', text)}}


def process(nb, stem, mode='all'):
    "Drop hidden cells and directive lines as nbdev does for docs; tag show_doc and skipped cells; typeset titles."
    cells = []
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'markdown':
            if i == 0 or not cells:
                c.source = tex_titles(re.sub(r'^(>.*)$', r'{.fnb-subtitle}\n\1', c.source, count=1, flags=re.M))
            cells.append(c); continue
        if c.cell_type != 'code': continue
        d = directives(c.source)
        if 'hide' in d or 'default_exp' in d or d.get('include', '').lower() == 'false': continue
        tags = []
        if is_show_doc(c.source) or d.get('echo', '').lower() == 'false': tags.append('remove-input')
        if d.get('output', '').lower() == 'false': tags.append('remove-output')
        flag = next((f for f in SKIP_FLAGS if f in d), None)
        if flag and not c.get('outputs'):
            c.outputs = [note(f'Not run when the docs are built: a <code>{flag}</code> cell '
                              f'(<code>nbdev_test --path nbs/{stem}.ipynb --flags {flag}</code> runs it).')]
        c.source = body(c.source)
        if not c.source and not c.get('outputs'): continue
        c.metadata = {'tags': tags} if tags else {}
        cells.append(c)
    nb.cells = cells
    return nb


# ---------------------------------------------------------------- Sphinx project
CONF = '''# generated by tools/build_docs.py
project = {title!r}
author = {author!r}
copyright = {copyright!r}
extensions = ['myst_nb']
html_theme = 'furo'
html_title = {title!r}
html_static_path = ['_static']
html_css_files = ['styles.css']
html_js_files = ['fnb_search_maths.js']
html_show_sourcelink = False
exclude_patterns = ['_build', '_doctrees', '**.ipynb_checkpoints']
root_doc = 'index'
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'attrs_block', 'attrs_inline', 'colon_fence']
myst_heading_anchors = 3
myst_update_mathjax = False  # MathJax 2 is configured below (myst's setting is for MathJax 3)
suppress_warnings = ['myst.header', 'mystnb.unknown_mime_type', 'misc.highlighting_failure', 'toc.not_included']
mathjax_path = 'mathjax/MathJax.js?config=TeX-AMS_CHTML'
mathjax2_config = {{'tex2jax': {{'inlineMath': [['\\\\(', '\\\\)']], 'displayMath': [['\\\\[', '\\\\]']],
                                'processEscapes': True, 'ignoreClass': 'tex2jax_ignore|mathjax_ignore',
                                'processClass': 'math|tex2jax_process'}},
                   'CommonHTML': {{'linebreaks': {{'automatic': True}}}}, 'messageStyle': 'none'}}

def setup(app):
    app.set_html_assets_policy('always')  # MathJax on every page: the sidebar carries maths too
'''


SEARCH_MATHS_JS = r"""// Sphinx writes search-result summaries after MathJax has run: typeset them once they are in; a summary cut
// inside a formula is cut before it instead, so that no raw TeX shows
function fnbTypesetSearch(box) {
  for (const p of box.querySelectorAll('p')) {
    const t = p.textContent;
    for (const [o, c] of [['\\(', '\\)'], ['\\[', '\\]']]) {
      const i = t.lastIndexOf(o);
      if (i >= 0 && t.indexOf(c, i) < 0) { p.textContent = t.slice(0, i) + '...'; break; }
    }
  }
  if (window.MathJax && MathJax.Hub) MathJax.Hub.Queue(['Typeset', MathJax.Hub, box]);
}
document.addEventListener('DOMContentLoaded', () => {
  const box = document.getElementById('search-results');
  if (!box) return;
  let timer = null;
  new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(() => fnbTypesetSearch(box), 100); })
    .observe(box, {childList: true, subtree: true});
});
"""


def toctree_cell(sections):
    "A markdown cell holding the site's (hidden) toctrees, one per sidebar section, for the root page."
    blocks = []
    for title, stems in sections:
        stems = [s for s in stems if s != 'index']
        if not stems: continue
        cap = f':caption: {tex_titles(title)}\n' if title else ''
        blocks.append('```{toctree}\n:hidden:\n' + cap + '\n'.join(stems) + '\n```')
    return {'cell_type': 'markdown', 'metadata': {}, 'source': '\n\n'.join(blocks)}


def copy_mathjax(dest):
    "Copy the parts of Debian's MathJax 2 that TeX-AMS_CHTML uses to `dest`."
    src = next((Path(d) for d in MATHJAX_DIRS if (Path(d) / 'MathJax.js').exists()), None)
    if src is None:
        sys.exit("MathJax not found: install Debian's libjs-mathjax (apt-get install libjs-mathjax) to typeset offline")
    keep = lambda d, names: [n for n in names if n in ('unpacked', 'test', 'STIX-Web', 'HTML-CSS', 'SVG', 'NativeMML', 'PreviewHTML',
                                                    'png', 'otf', 'svg', 'eot')
                             or (Path(d).name == 'config' and n.endswith('.js') and not n.startswith('TeX-AMS_CHTML'))]
    if (dest / 'MathJax.js').exists(): return
    shutil.copytree(src, dest, ignore=keep, dirs_exist_ok=True)
    # CommonHTML's web fonts live under fonts/HTML-CSS/TeX/woff: bring those back
    shutil.copytree(src / 'fonts' / 'HTML-CSS' / 'TeX' / 'woff', dest / 'fonts' / 'HTML-CSS' / 'TeX' / 'woff', dirs_exist_ok=True)


def settings():
    import configparser
    c = configparser.ConfigParser(); c.read(ROOT / 'settings.ini')
    return c['DEFAULT']


def build(only=None, mode='all', out=ROOT / '_docs', src=None, full=()):
    "Stage processed notebooks in `src` (executed as `mode`, or fully for stems in `full`), then build the site into `out`."
    from execnb.nbio import nb2str
    from sphinx.cmd.build import build_main
    import tempfile
    if src is None:
        with tempfile.TemporaryDirectory(prefix='fnb_docs_') as tmp: return build(only, mode, out, Path(tmp), full)
    if src.exists(): shutil.rmtree(src)
    (src / '_static').mkdir(parents=True)
    sections = sidebar_sections()
    pages = [(s, p) for s, p in notebooks() if s == 'index' or not only or s in only]
    for stem, path in pages:
        t, m = time.time(), 'all' if stem in full else mode
        nb = process(execute(path, m), stem, m)
        if stem == 'index':
            from execnb.nbio import NbCell
            keep = [(t_, [s for s in ss if any(s == q for q, _ in pages)]) for t_, ss in sections]
            nb.cells.append(NbCell(len(nb.cells), toctree_cell(keep)))
        dest = src / f'{stem}.ipynb'; dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(nb2str(nb))
        print(f'{stem}: executed ({m}) in {time.time() - t:.1f} s', flush=True)
    s = settings()
    (src / 'conf.py').write_text(CONF.format(title=s.get('title', 'docs'), author=s.get('author', ''),
                                             copyright=s.get('copyright', '')))
    shutil.copy(NBS / 'styles.css', src / '_static' / 'styles.css')
    (src / '_static' / 'fnb_search_maths.js').write_text(SEARCH_MATHS_JS)
    copy_mathjax(src / '_static' / 'mathjax')
    t = time.time()
    rc = build_main(['-b', 'html', '-q', '-E', '-d', str(src / '_doctrees'), str(src), str(out)])
    if rc: sys.exit(f'sphinx-build failed (exit {rc})')
    print(f'sphinx: {len(pages)} pages in {time.time() - t:.1f} s -> {out}')
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--only', nargs='*', help='notebook stems to build besides index (default: all)')
    p.add_argument('--exec', dest='mode', choices=['all', 'api'], default='all',
                   help='all: every cell nbdev_test runs (default); api: only exports, imports and show_doc')
    p.add_argument('--full', nargs='*', default=[], help='with --exec api: notebook stems to execute fully all the same')
    p.add_argument('--out', default=str(ROOT / '_docs'))
    a = p.parse_args(argv)
    if shutil.which('quarto') and not a.only and a.mode == 'all':
        if settings().get('custom_sidebar', 'False').lower() not in ('true', '1', 'yes'):
            sys.exit('settings.ini has custom_sidebar = False, so nbdev_docs would overwrite nbs/sidebar.yml (the one '
                     'source of the sidebar) with a list of files: set custom_sidebar = True')
        sys.exit(subprocess.call(['nbdev_docs'], cwd=ROOT))
    missing = unlisted()
    if missing: print(f'warning: nbs/sidebar.yml does not list {", ".join(missing)}: not in the site', file=sys.stderr)
    build(a.only, a.mode, Path(a.out).resolve(), full=a.full)


if __name__ == '__main__':
    main()

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
sys.path.insert(0, str(ROOT / 'tools'))  # texify_md
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


def missing_listed():
    "Notebooks nbs/sidebar.yml lists that do not exist."
    return [s for _, ss in sidebar_sections() for s in ss if not (NBS / f'{s}.ipynb').exists()]


def notebooks():
    "All notebooks in sidebar order as (stem, path); index first."
    seen, out = set(), []
    for _, stems in sidebar_sections():
        for s in stems:
            p = NBS / f'{s}.ipynb'
            if s in seen: continue
            if not p.exists():  # a chapter still being written: the site is built without it
                print(f'warning: nbs/sidebar.yml lists {s}.ipynb, which does not exist: left out', file=sys.stderr)
                continue
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
        if not _: k, _, v = m.group(1).strip().partition(' ')  # `default_exp core`, `export other`
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


# ---------------------------------------------------------------- API entries, as nbdev's add_show_docs (objects from the package)
PACKAGE = 'flatness_nb'
PATCH_DECOS = ('patch', 'patch_to')


def default_exp(nb_cells):
    "The module a notebook exports to (`#| default_exp`), or None."
    for c in nb_cells:
        if c['cell_type'] == 'code':
            m = directives(src_of(c)).get('default_exp')
            if m: return m.split()[0]
    return None


def src_of(c):
    s = c['source'] if isinstance(c, dict) else c.source
    return ''.join(s) if isinstance(s, list) else s


def export_module(src, default):
    "The module an export cell writes to: `#| export other` or the notebook's default; None for a cell that does not export."
    d = directives(src)
    for k in ('export', 'exports'):
        if k in d: return d[k].split()[0] if d[k] else default
    return None


def public_names(src):
    "Public functions and classes an export cell defines, nbdev-style: `name`, and `Cls.name` for a method added with @patch."
    import ast
    try: tree = ast.parse(body(src))
    except SyntaxError: return []
    out = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        decos = [d.func if isinstance(d, ast.Call) else d for d in getattr(n, 'decorator_list', [])]
        if any(getattr(d, 'id', getattr(d, 'attr', None)) in PATCH_DECOS for d in decos) and not isinstance(n, ast.ClassDef):
            a = n.args.args[0].annotation if n.args.args else None
            cls = ast.unparse(a) if a is not None else None
            if cls and not cls.startswith('_') and '|' not in cls and '(' not in cls: out.append(f'{cls}.{n.name}')
            continue
        out.append(n.name)
    return out


def resolve(name, module=None):
    "The package object called `name` (`f`, `Cls.meth`, `module.f`), looked up in `module` first; None if not found."
    import importlib
    mods = ([module] if module else []) + [m.rsplit('.', 1)[1] for m in modidx_syms()]
    for mod in dict.fromkeys(mods):
        try: obj = importlib.import_module(f'{PACKAGE}.{mod}')
        except Exception: continue
        parts = name.split('.')
        if parts[0] == mod and len(parts) > 1: parts = parts[1:]
        try:
            for p in parts: obj = getattr(obj, p)
        except AttributeError: continue
        return obj, mod, '.'.join(parts)
    return None


def modidx_syms():
    "{module: {full name: ...}} from the package's _modidx (what nbdev_export wrote)."
    import importlib
    try: return importlib.import_module(f'{PACKAGE}._modidx').d['syms']
    except Exception: return {}


def public_index():
    "Every public name of the package as {key: full name}, keyed by `name`, `module.name` and the full name; a short name in two modules is left out."
    out, seen = {}, {}
    for mod, syms in modidx_syms().items():
        short_mod = mod.rsplit('.', 1)[1]
        for full in syms:
            rel = full[len(mod) + 1:]
            if any(p.startswith('_') for p in rel.split('.')): continue
            out[full] = full; out[f'{short_mod}.{rel}'] = full
            seen.setdefault(rel, set()).add(full)
    for rel, fulls in seen.items():
        if len(fulls) == 1: out[rel] = next(iter(fulls))
    return out


def _cell_md(text):
    return text.replace('|', r'\|').replace('\n', ' ').strip()


def api_entry(obj, name, module, prop=False, skip=()):
    "A MyST API entry for `obj`: a Python-domain directive (index entry, search result, link target) with the signature, the docstring and a parameter table from the docments."
    from fastcore.docments import docstring
    import texify_md
    kind = ('class' if inspect.isclass(obj) else 'property' if prop else 'method' if '.' in name else 'function')
    d = DocHTML(obj, name=name)
    try:
        sig = d._sig()
        sig = sig[len(name):] if sig and sig.startswith(name + '(') else '()' if kind != 'class' else ''
    except Exception: sig = ''
    sig = ' '.join(sig.split())
    if prop: sig = ''
    lines = [f'```{{py:{kind}}} {name}{sig}', f':module: {PACKAGE}.{module}', '']
    doc = (docstring(obj) or '').strip()
    if doc: lines += [texify_md.texify(doc), '']
    rows = d._rows()
    if any(r[1] or r[2] or r[3] for r in rows):
        lines += ['| Parameter | Type | Default | Details |', '|---|---|---|---|']
        for k, a, dflt, t in rows:
            code = lambda x: f'`{_cell_md(x)}`' if x else ''
            lines.append(f'| {code(k)} | {code(a)} | {code(dflt)} | {_cell_md(texify_md.texify(t))} |')
    members = [m for m in class_members(obj) if f'{name}.{m[0]}' not in skip] if kind == 'class' else []
    for mname, m in members:  # a class's own public methods and properties, nested in its entry
        lines += ['', api_entry(m, mname, module, prop=isinstance(inspect.getattr_static(obj, mname), property))
                  .replace(f':module: {PACKAGE}.{module}\n', '', 1).replace('{py:function}', '{py:method}', 1)]
    lines.append('````' if members else '```')
    if members: lines[0] = '`' + lines[0]
    return '\n'.join(lines)


def class_members(cls):
    "The public methods and properties defined in `cls` itself (not inherited), in definition order."
    out = []
    for k, v in vars(cls).items():
        if k.startswith('_'): continue
        if isinstance(v, property): out.append((k, v.fget))
        elif inspect.isfunction(v): out.append((k, v))
    return out


def md_cell(text, **meta):
    from execnb.nbio import NbCell
    return NbCell(0, {'cell_type': 'markdown', 'metadata': meta, 'source': text})


SHOW_DOC_ARG = re.compile(r'^\s*show_doc\(\s*([A-Za-z_][\w.]*)\s*(?:[,)])')


def is_setup(src):
    "The setup cell every notebook opens with (seeds, dtype, device): hidden in the docs."
    d = directives(src)
    return 'export' not in d and bool(re.search(r'^\s*\w+\s*=\s*setup_notebook\(', body(src), re.M))


def display_maths_apart(md):
    "`$$...$$` written inside a paragraph set apart on its own lines, as MyST needs to read it as display maths."
    parts = re.split(r'(```.*?```)', md, flags=re.S)
    return ''.join(p if i % 2 else re.sub(r'^[ \t]*\$\$(.+?)\$\$[ \t]*$', lambda m: f'\n$${m[1]}$$\n', p, flags=re.S | re.M)
                   for i, p in enumerate(parts))


def link_names(md, index, module=None, pages=None):
    "Backticked public names (`network_curvature`, `sweep.network_curvature`) in prose as links to their API entries, and backticked notebook names as links to their pages."
    pages = pages if pages is not None else {s for s, _ in notebooks()}
    def one(m):
        name = m.group(1)
        key = name[:-2] if name.endswith('()') else name
        if key in pages: return f'[`{name}`](/{key}.ipynb)'
        full = index.get(f'{module}.{key}') if module else None
        full = full or index.get(key)
        return f'{{py:obj}}`{name} <{full}>`' if full else m.group(0)
    out = []
    for part in re.split(r'(```.*?```|\$\$.*?\$\$|\$[^$]+?\$)', md, flags=re.S):
        if part.startswith(('```', '$')): out.append(part); continue
        lines = [l if l.lstrip().startswith('#') else re.sub(r'(?<![\[`])`(\w[\w./]*(?:\(\))?)`(?![`\]])', one, l)
                 for l in part.split('\n')]
        out.append('\n'.join(lines))
    return ''.join(out)


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


DOCUMENTED = set()  # full names with an indexed API entry in this build (a second entry is not indexed)


def entry_cell(name, module, skip=()):
    "A markdown cell with the API entry of package object `name`, or None when it is not in the package."
    r = resolve(name, module)
    if r is None: return None
    obj, mod, rel = r
    text = api_entry(obj, rel, mod, skip=skip)
    full = f'{PACKAGE}.{mod}.{rel}'
    if full in DOCUMENTED: text = text.replace('\n', '\n:no-index:\n', 1)
    DOCUMENTED.add(full)
    return md_cell(text)


def process(nb, stem, mode='all'):
    """nbdev's docs processing: exported source dropped and an API entry added for each public name it defines (unless a
    `show_doc` of it is in the notebook), `show_doc` cells as API entries, the setup cell, `#| hide` cells and directive
    lines dropped, backticked names linked to their entries, titles typeset."""
    module, index, pages = default_exp(nb.cells), public_index(), {s for s, _ in notebooks()}
    explicit = set()
    for c in nb.cells:
        if c.cell_type == 'code' and is_show_doc(c.source):
            for l in body(c.source).splitlines():
                m = SHOW_DOC_ARG.match(l)
                if m: explicit |= {m.group(1), m.group(1).split('.', 1)[-1]}
    # methods added with @patch get entries of their own where they are defined: not again inside their class's entry
    own = explicit | {n for c in nb.cells if c.cell_type == 'code' and export_module(c.source, module)
                      for n in public_names(c.source) if '.' in n}
    cells, setup_seen = [], False
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'markdown':
            if i == 0 or not cells:
                import texify_md  # the subtitle is also the module's docstring, so it keeps unicode notation: typeset here
                c.source = texify_md.texify(re.sub(r'^(>.*)$', r'{.fnb-subtitle}\n\1', c.source, count=1, flags=re.M))
            c.source = link_names(display_maths_apart(c.source), index, module, pages)
            cells.append(c); continue
        if c.cell_type != 'code': continue
        d = directives(c.source)
        if not setup_seen and is_setup(c.source): setup_seen = True; continue
        exp = export_module(c.source, module)
        if exp:
            entries = [entry_cell(n, exp, own) for n in public_names(c.source) if n not in explicit]
            if 'exports' not in d or 'hide' in d:
                cells += [e for e in entries if e is not None]; continue
        else: entries = []
        if is_show_doc(c.source) and 'hide' not in d:
            m = SHOW_DOC_ARG.match(body(c.source))
            e = entry_cell(m.group(1), module, own) if m else None
            if e is not None: cells.append(e); continue
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
        cells += [e for e in entries if e is not None]
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
                   'CommonHTML': {{'linebreaks': {{'automatic': False}}}}, 'messageStyle': 'none'}}
add_module_names = False  # API entries read `network_curvature(...)`, the module is in the index
python_maximum_signature_line_length = 80  # a longer signature gets one parameter a line
toc_object_entries = False  # API entries are not headings of the page's table of contents

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
    blocks.append('```{toctree}\n:hidden:\n:caption: Reference\n\nIndex of names <genindex>\n```')
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
    DOCUMENTED.clear()
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
    if (NBS / 'images').is_dir(): shutil.copytree(NBS / 'images', src / 'images', dirs_exist_ok=True)  # markdown's figures
    (src / '_static' / 'fnb_search_maths.js').write_text(SEARCH_MATHS_JS)
    copy_mathjax(src / '_static' / 'mathjax')
    t = time.time()
    html_dir = src.parent / (src.name + '_html') / 'html'  # myst-nb writes jupyter_execute/ beside the output folder
    rc = build_main(['-b', 'html', '-q', '-E', '-d', str(src / '_doctrees'), str(src), str(html_dir)])
    if rc: sys.exit(f'sphinx-build failed (exit {rc})')
    if out.exists(): shutil.rmtree(out)
    shutil.copytree(html_dir, out)
    shutil.rmtree(html_dir.parent, ignore_errors=True)
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

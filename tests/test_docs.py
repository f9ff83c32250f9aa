"""The documentation site as a reader sees it. Without a browser (fast): every notebook processed as the docs build does
has no exported source, an API entry for at least 90 % of the package's public names, no setup cell, and no raw notation
(κ^φ_Tr, λ_max, t_fb) in its prose. In a browser: Without Quarto, `make docs` builds it with Sphinx + myst-nb
(tools/build_docs.py); here every page of that site is built (cells that the API docs need are executed everywhere, the
whole notebook for `FULL`, to keep CI short) and opened in headless Chromium at 1300 px, and each page is checked: nothing
runs off the right edge, no raw attribute text or `In [ ]:` prompts, MathJax typeset every formula (sidebar included)
without errors, every visible show_doc is a signature with a parameter table, skipped slow cells carry a note, images
load, and the search box finds pages. The pure-Python parts (sidebar from one source, show_doc unhiding, maths in titles)
are tested without a browser."""
import json, os, re, shutil, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import build_docs as bd
import texify_md as tx
import unhide_show_doc as uh

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')
MATHJAX = any((Path(d) / 'MathJax.js').exists() for d in bd.MATHJAX_DIRS)
browser_only = pytest.mark.skipif(not (CHROMIUM and DRIVER and MATHJAX),
                                  reason="needs Debian's chromium, chromium-driver and libjs-mathjax (.ci/run installs them)")
FULL = ['index', '03_feature_robustness']  # executed in full: outputs, a figure and a slow cell's note


# ---------------------------------------------------------------- without a browser
def test_sidebar_has_one_source_listing_every_notebook():
    "nbs/sidebar.yml is the only sidebar: Quarto reads it, the Sphinx build reads it, it lists every notebook, in reading order."
    quarto = (ROOT / 'nbs' / '_quarto.yml').read_text()
    assert re.search(r'metadata-files:.*sidebar\.yml', quarto), 'nbs/_quarto.yml must read nbs/sidebar.yml'
    assert 'contents' not in quarto, 'the sidebar is written in nbs/sidebar.yml only'
    assert 'GROUPS' not in (ROOT / 'tools' / 'build_docs.py').read_text()
    assert bd.unlisted() == [], f'notebooks missing from nbs/sidebar.yml: {bd.unlisted()}'
    assert bd.missing_listed() == [], f'nbs/sidebar.yml lists notebooks that do not exist: {bd.missing_listed()}'
    stems = [s for s, _ in bd.notebooks()]
    assert stems[:2] == ['index', '00_core'], 'the landing page, then 00_core, whose notation every chapter uses'
    assert len(stems) == len(set(stems))
    assert sorted(stems) == sorted(p.relative_to(ROOT / 'nbs').with_suffix('').as_posix()
                                   for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)


@pytest.fixture(scope='module')
def processed():
    "Every notebook as the docs build stages it, without executing it: {stem: (notebook cells, processed cells)}."
    from execnb.nbio import read_nb
    bd.DOCUMENTED.clear()
    out = {}
    for stem, path in bd.notebooks():
        raw = read_nb(path)
        out[stem] = (read_nb(path).cells, bd.process(bd.split_show_doc(raw), stem, 'api').cells)
    return out


ENTRY = re.compile(r'^`{3,4}\{py:(function|class|method)\} ([\w.]+)[^\n]*\n:module: ([\w.]+)', re.M)


def test_docs_show_api_entries_not_exported_source(processed):
    "nbdev's rm_export and add_show_docs: no exported source on a page, an API entry for >= 90 % of public names."
    problems, documented = [], set()
    for stem, (cells, out) in processed.items():
        exported = [bd.body(c.source).strip() for c in cells if c.cell_type == 'code' and 'export' in bd.directives(c.source)]
        shown = [c.source.strip() for c in out if c.cell_type == 'code']
        leaks = [e for e in exported if e and e in shown]
        if leaks: problems.append(f'{stem}: {len(leaks)} exported cells shown as source, e.g. {leaks[0][:60]!r}')
        first = next((c for c in out if c.cell_type == 'code'), None)
        if first is not None and bd.is_setup(first.source): problems.append(f'{stem}: the page opens with the setup cell')
        for c in out:
            if c.cell_type == 'markdown':
                documented |= {f'{m[3]}.{m[2]}' for m in ENTRY.finditer(c.source)}
    public = {full for mod, syms in bd.modidx_syms().items() for full in syms
              if '.' not in full[len(mod) + 1:] and not full[len(mod) + 1:].startswith('_')}
    cover = len(public & documented) / len(public)
    assert not problems, '\n'.join(problems)
    assert cover >= 0.9, f'API entries for {cover:.0%} of {len(public)} public names; missing {sorted(public - documented)[:20]}'


def test_prose_has_no_raw_notation():
    """Every symbol in markdown prose and headings is LaTeX: no κ^φ_Tr, λ_max, t_fb, σ² or lone Greek letters outside maths
    (a page's subtitle, which nbdev writes into the module's docstring, may keep unicode: the build typesets it)."""
    places = []
    for stem, path in bd.notebooks():
        for i, c in enumerate(json.loads(path.read_text())['cells']):
            if c['cell_type'] == 'markdown':
                md = ''.join(c['source'])
                if i == 0:  # title and subtitle: nbdev makes the subtitle the module docstring, the build typesets it
                    md = tx.texify(md)
                places += [f'{stem}: {r}' for r in tx.raw_notation(md)]
    assert not places, f'{len(places)} places: {places[:15]} (python tools/texify_md.py NOTEBOOK converts them)'


def test_texify_writes_notation_as_latex():
    assert tx.texify('κ^φ_Tr at ρ = 0.3, λ_max(H) in t_fb, ‖θ‖², 3σ, 10⁻⁹; `κ_l` and $x_i$ kept') == (
        r'$\kappa^{\phi}_{\mathrm{Tr}}$ at $\rho = 0.3$, $\lambda_{\max}(H)$ in $t_{\mathrm{fb}}$, $\lVert \theta\rVert^{2}$, '
        r'$3\sigma$, $10^{-9}$; `κ_l` and $x_i$ kept')
    assert tx.raw_notation('a κ b, `κ` c, $\\kappa$ d') == ['κ']


def test_backticked_names_link_to_their_entries():
    index = {'network_curvature': 'flatness_nb.sweep.network_curvature',
             'sweep.network_curvature': 'flatness_nb.sweep.network_curvature'}
    md = '## `network_curvature`\nsee `network_curvature`, `sweep.network_curvature()`, `other` and `02_x`\n```\n`network_curvature`\n```'
    assert bd.link_names(md, index, pages={'02_x'}) == (
        '## `network_curvature`\nsee {py:obj}`network_curvature <flatness_nb.sweep.network_curvature>`, '
        '{py:obj}`sweep.network_curvature() <flatness_nb.sweep.network_curvature>`, `other` and [`02_x`](/02_x.ipynb)'
        '\n```\n`network_curvature`\n```')


def test_figures_fit_the_column():
    "Figures are drawn at most 8 inches wide (at the column's width their labels stay readable)."
    wide = []
    for stem, path in bd.notebooks():
        for c in json.loads(path.read_text())['cells']:
            if c['cell_type'] == 'code':
                wide += [f'{stem}: figsize {w}' for w in re.findall(r'figsize\s*=\s*\(\s*([\d.]+)', ''.join(c['source']))
                         if float(w) > 8]
    assert not wide, wide


def _nb(*sources):
    return {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': f'c{i}', 'metadata': {}, 'outputs': [],
                       'source': s} for i, s in enumerate(sources)],
            'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}


def test_unhide_show_doc_is_idempotent_and_touches_only_show_doc_cells(tmp_path):
    p = tmp_path / 'x.ipynb'
    p.write_text(json.dumps(_nb(['#| hide\n', 'from nbdev.showdoc import show_doc'], ['#| hide\n', 'show_doc(f)\n', 'show_doc(g)'],
                                ['#| hide\n', 'show_doc(h)'], ['show_doc(k)'], ['#| hide\n', 'x = show_doc(f)'])))
    assert uh.fix(p) == 2
    src = [''.join(c['source']) for c in json.loads(p.read_text())['cells']]
    assert src == ['#| hide\nfrom nbdev.showdoc import show_doc', 'show_doc(f)', 'show_doc(g)', 'show_doc(h)', 'show_doc(k)',
                   '#| hide\nx = show_doc(f)']
    before = p.read_text()
    assert uh.fix(p) == 0 and p.read_text() == before


def test_titles_get_typeset_maths():
    t = bd.tex_titles('κ^φ_Tr of a layer, κ_l, ρ_l(j), `a_b` and $x_i$ kept, E_emp')
    assert t == (r'$\kappa^{\phi}_{\mathrm{Tr}}$ of a layer, $\kappa_{l}$, $\rho_{l}$(j), `a_b` and $x_i$ kept, '
                 r'$E_{\mathrm{emp}}$')
    assert bd.tex_titles('gauss_newton and E_emp', greek_only=True) == 'gauss_newton and E_emp'


def _example(model, n: int = 3, *, loss_fn=len, tol: float = 1e-9) -> float:  # the value
    "An example whose κ^φ_Tr is $x^2$."
    return 0.


def test_show_doc_renders_signature_and_parameter_table():
    h = bd.DocHTML(_example)._repr_html_()
    assert '<pre class="fnb-sig"><code>_example(model, n=3, *, loss_fn=len, tol=1e-09) -&gt; float</code></pre>' in h
    rows = re.findall(r'<tr><td><code>(\w+)</code></td><td><code>([^<]*)</code></td><td><code>([^<]*)</code></td>', h)
    assert rows == [('model', '', ''), ('n', 'int', '3'), ('loss_fn', '', 'len'), ('tol', 'float', '1e-09'),
                    ('returns', 'float', '')]
    assert 'the value' in h and r'\(\kappa^{\phi}_{\mathrm{Tr}}\)' in h and r'\(x^2\)' in h and ' at 0x' not in h


# ---------------------------------------------------------------- the built site in a browser
@pytest.fixture(scope='module')
def site(tmp_path_factory):
    if os.environ.get('FNB_DOCS_SITE'): return Path(os.environ['FNB_DOCS_SITE'])  # a site built before, to iterate fast
    out = tmp_path_factory.mktemp('docs')
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--exec', 'api', '--full', *FULL,
                        '--out', str(out)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--allow-file-access-from-files', '--window-size=1300,900', '--hide-scrollbars']:
        o.add_argument(a)
    o.binary_location = CHROMIUM
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    d.set_window_size(1300, 900)
    yield d
    d.quit()


def load(browser, url, timeout=60):
    "Open `url` and wait until MathJax has finished typesetting."
    browser.get(url)
    js = 'return !!(window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0)'
    t = time.time()
    while time.time() - t < timeout and not browser.execute_script(js): time.sleep(0.2)
    time.sleep(0.3)


OVERFLOW_JS = """
const W = document.documentElement.clientWidth, bad = [];
for (const e of document.querySelectorAll('body *')) {
  if (e.closest('.toc-drawer')) continue;  // Furo's table of contents: a drawer kept off-canvas below 82em, by design
  const r = e.getBoundingClientRect();
  if (r.width === 0 || r.right <= W + 1) continue;
  let a = e.parentElement, clipped = false;
  for (; a && a !== document.body; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && a.getBoundingClientRect().right <= W + 1) { clipped = true; break; }
  }
  if (!clipped) bad.push(e.tagName + '.' + e.className + ' right=' + Math.round(r.right));
}
return [document.documentElement.scrollWidth, W, bad.slice(0, 5)];
"""
TEXT_JS = """
const skip = 'pre, code, script, style, .mjx-chtml, .MJX_Assistive_MathML, .MathJax_Preview';
const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), out = [];
while (w.nextNode()) {
  const p = w.currentNode.parentElement;
  if (p && !p.closest(skip) && p.getClientRects().length) out.push(w.currentNode.textContent);
}
return out.join(' ');
"""  # the prose a reader sees: code and typeset maths left out
FIT_JS = """
const col = document.querySelector('article') || document.querySelector('.content') || document.body;
const W = col.getBoundingClientRect().width, split = [], big = [];
let wide = 0;
for (const p of document.querySelectorAll('div.highlight pre, .cell_output pre')) if (p.scrollWidth > p.clientWidth + 1) wide++;
for (const m of document.querySelectorAll('td .MathJax_CHTML, th .MathJax_CHTML')) {
  const lh = parseFloat(getComputedStyle(m.closest('td, th')).fontSize) * 3;
  if (m.getClientRects().length > 1 || m.getBoundingClientRect().height > lh * 1.5) split.push(m.textContent.slice(0, 30));
}
for (const i of document.querySelectorAll('article img')) {  // drawn at most 8 in wide (checked without a browser)
  const w = i.getBoundingClientRect().width;
  if (w > W + 1) big.push(Math.round(w) + '>' + Math.round(W));
}
return [wide, split, big];
"""
RAW_ATTR = re.compile(r'\{(target=|style=|[.#][A-Za-z][\w-]*[\s}])|:::|\bIn \[\s*\d*\]:|\bOut\[\s*\d*\]:')


def visible_show_docs(stem):
    nb = json.loads((ROOT / 'nbs' / f'{stem}.ipynb').read_text())
    n = 0
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'code' and bd.is_show_doc(src) and 'hide' not in bd.directives(src):
            n += sum(1 for l in bd.body(src).splitlines() if l.strip())
    return n


def slow_cells(stem):
    nb = json.loads((ROOT / 'nbs' / f'{stem}.ipynb').read_text())
    return sum(1 for c in nb['cells'] if c['cell_type'] == 'code' and not c.get('outputs')
               and any(f in bd.directives(''.join(c['source'])) for f in bd.SKIP_FLAGS)
               and 'hide' not in bd.directives(''.join(c['source'])))


@browser_only
def test_every_page_reads_like_a_documentation_site(site, browser):
    stems = [s for s, _ in bd.notebooks()]
    exports = {}
    for stem, path in bd.notebooks():
        for c in json.loads(path.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and 'export' in bd.directives(src):  # the first line of each definition
                exports.setdefault(stem, []).extend(l.strip() for l in bd.body(src).splitlines()
                                                    if re.match(r'(def|class) [A-Za-z]\w*\W', l))
    problems, n_docs = [], 0
    for stem in stems:
        load(browser, (site / f'{stem}.html').as_uri())
        width, client, bad = browser.execute_script(OVERFLOW_JS)
        if width > client + 1 or bad: problems.append(f'{stem}: runs off the right edge at 1300 px: {width} > {client} {bad}')
        text = browser.execute_script(TEXT_JS)
        m = RAW_ATTR.search(text)
        if m: problems.append(f'{stem}: raw text {text[max(0, m.start() - 40):m.end() + 40]!r}')
        if browser.find_elements('css selector', '.prompt, .input_prompt, .output_prompt'): problems.append(f'{stem}: prompts')
        n_err = len(browser.find_elements('css selector', '.MathJax_Error, .mjx-merror'))
        raw_tex = re.findall(r'\\\(|\\\[|\$\\[a-zA-Z]+', text)
        if n_err or raw_tex: problems.append(f'{stem}: MathJax errors {n_err}, untypeset {raw_tex[:3]}')
        if not browser.find_elements('css selector', 'input[name=q]'): problems.append(f'{stem}: no search box')
        entries = browser.find_elements('css selector', 'dl.py')
        n_docs += len(entries)
        if stem in exports and not entries: problems.append(f'{stem}: exports {len(exports[stem])} names, no API entry')
        for d in entries:
            sig = d.find_elements('css selector', 'dt.sig')
            if not sig: problems.append(f'{stem}: an API entry without signature: {d.text[:80]!r}')
        code = ' '.join(e.text for e in browser.find_elements('css selector', 'div.highlight pre'))
        leaked = [n for n in exports.get(stem, ()) if n in code]
        if leaked: problems.append(f'{stem}: exported source on the page: {leaked[:3]}')
        wide, split, big = browser.execute_script(FIT_JS)
        if wide: problems.append(f'{stem}: {wide} code blocks wider than the column')
        if split: problems.append(f'{stem}: formulas split across lines in table cells: {split[:3]}')
        if big: problems.append(f'{stem}: figures wider than the column: {big[:3]}')
        notes = len(browser.find_elements('css selector', '.fnb-note'))
        if notes < slow_cells(stem): problems.append(f'{stem}: {slow_cells(stem)} slow cells, {notes} notes')
        imgs = browser.execute_script('return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])')
        problems += [f'{stem}: image not loaded {s}' for s, ok in imgs if not ok]
    assert not problems, '\n'.join(problems)
    assert n_docs >= 1


@browser_only
def test_maths_typeset_in_sidebar_titles_and_subtitles(site, browser):
    load(browser, (site / '02_relative_flatness.html').as_uri())
    assert browser.find_elements('css selector', '.fnb-subtitle .mjx-chtml'), 'the subtitle has typeset maths'
    assert len(browser.find_elements('css selector', '.mjx-chtml')) > 20
    titled = [s for s, p in bd.notebooks() if re.search(r'[\^_$]', json.loads(p.read_text())['cells'][0]['source'][0])]
    if titled:  # a title with maths shows typeset in every page's sidebar
        assert browser.find_elements('css selector', '.sidebar-tree .mjx-chtml'), titled


@browser_only
def test_figure_page_shows_outputs(site, browser):
    load(browser, (site / f'{FULL[1]}.html').as_uri())
    imgs = browser.execute_script('return Array.from(document.images).map(i => i.naturalWidth)')
    assert len(imgs) >= 1 and all(w > 0 for w in imgs), imgs
    assert browser.find_elements('css selector', '.cell_output'), 'executed cells show their output'


@browser_only
def test_search_box_finds_pages(site, browser):
    load(browser, (site / 'index.html').as_uri())
    box = browser.find_element('css selector', 'input[name=q]')
    box.send_keys('Hutchinson'); box.submit()
    t = time.time()
    while time.time() - t < 30 and not browser.find_elements('css selector', '#search-results li'): time.sleep(0.2)
    hits = [a.get_attribute('href') for a in browser.find_elements('css selector', '#search-results li a')]
    assert any('01_hessian' in h for h in hits), hits
    t = time.time()
    while time.time() - t < 30 and re.search(r'\\\(', browser.execute_script(TEXT_JS)): time.sleep(0.3)
    assert not re.search(r'\\\(', browser.execute_script(TEXT_JS)), 'maths in search summaries is typeset'


@browser_only
def test_api_entries_are_found_by_search_and_in_the_index(site, browser):
    "Searching a function's name finds its API entry first; the index of names lists it."
    load(browser, (site / 'search.html').as_uri() + '?q=network_curvature')
    t = time.time()
    while time.time() - t < 30 and not browser.find_elements('css selector', '#search-results li'): time.sleep(0.2)
    hits = [a.get_attribute('href') for a in browser.find_elements('css selector', '#search-results li a')]
    assert hits and hits[0].endswith('01a_sweep.html#flatness_nb.sweep.network_curvature'), hits[:3]
    load(browser, (site / 'genindex.html').as_uri())
    links = browser.find_elements('css selector', 'a[href$="#flatness_nb.sweep.network_curvature"]')
    assert links, 'network_curvature is in the index of names'
    assert len(browser.find_elements('css selector', 'table.genindextable a')) > 200

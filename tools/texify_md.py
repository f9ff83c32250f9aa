"""Typeset raw notation in the markdown cells of notebooks: `κ^φ_Tr`, `λ_max(H)`, `t_fb`, `σ²`, `‖θ‖²`, `10⁻⁹` and lone Greek
letters in prose and headings become LaTeX ($\\kappa^{\\phi}_{\\mathrm{Tr}}$, ...). Code spans, maths and HTML are left
alone. Each changed markdown line is replaced in the file's text in place (a targeted replacement, so that edits others make
to other cells of the same notebook at the same time survive), and only when it occurs once in the file.

    python tools/texify_md.py [--dry] NOTEBOOK ...

`raw_notation(md)` lists what is still raw; tests/test_docs.py uses it on every notebook.
"""
import json, re, sys
from pathlib import Path

GREEK = dict(zip('αβγδεζηθικλμνξπρστυφχψωΓΔΘΛΞΠΣΦΨΩϕϵ',
                 r'\alpha \beta \gamma \delta \epsilon \zeta \eta \theta \iota \kappa \lambda \mu \nu \xi \pi \rho \sigma '
                 r'\tau \upsilon \phi \chi \psi \omega \Gamma \Delta \Theta \Lambda \Xi \Pi \Sigma \Phi \Psi \Omega \phi '
                 r'\epsilon'.split()))
G = ''.join(GREEK)
SUPS = dict(zip('⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ⁱⁿ', '0123456789+-in'))
SUBS = dict(zip('₀₁₂₃₄₅₆₇₈₉₊₋ₐₑₒₓₗₘₙₚₛₜ', '0123456789+-aeoxlmnpst'))
OPS = '∑∈⊗√∂∇‖⊤∫∞∝'
S, B = ''.join(SUPS), ''.join(SUBS)
# what a reader sees as untypeset maths: a letter with ^/_ scripts, Greek, unicode scripts, maths operators
RAW = re.compile(rf'(?<![\w$\\/.\-])[A-Za-z{G}](?:[\^_][A-Za-z0-9{G}]+)+(?![\w$(])|[{G}{S}{B}{OPS}]')
SKIP = re.compile(r'(```.*?```|`[^`\n]*`|\$\$.*?\$\$|\$[^$]+?\$|\\begin\{(\w+\*?)\}.*?\\end\{\2\}|<[^>\n]*>|\]\([^)\n]*\)'
                  r'|https?://\S+)', re.S)
CODE = re.compile(r'(```.*?```|`[^`\n]*`|\$\$.*?\$\$|<[^>\n]*>|\]\([^)\n]*\)|https?://\S+)', re.S)
WORDS = {'max': r'\max', 'min': r'\min', 'log': r'\log', 'exp': r'\exp'}


def _outside(md, fn, maths=False):
    "Apply `fn` to the parts of `md` outside code, maths (unless `maths`), HTML tags and link targets."
    pieces, last = [], 0
    for m in (CODE if maths else SKIP).finditer(md):
        pieces.append(fn(md[last:m.start()])); pieces.append(m.group(0)); last = m.end()
    pieces.append(fn(md[last:]))
    return ''.join(pieces)


def raw_notation(md):
    "The raw-notation places in markdown `md` (outside code, maths, HTML and links)."
    found = []
    _outside(md, lambda s: found.extend(m.group(0) for m in RAW.finditer(s)) or s)
    return found


def _sym(s):
    "A symbol string (Greek, Latin, unicode scripts) as TeX."
    out = ''
    for ch in s:
        if ch in GREEK: out += GREEK[ch] + ' '
        elif ch in SUPS: out += '^{' + SUPS[ch] + '}'
        elif ch in SUBS: out += '_{' + SUBS[ch] + '}'
        else: out += ch
    out = re.sub(r'\}\^\{', '', out.replace('}^{', '\x00')).replace('\x00', '')  # merge ^{1}^{0} -> ^{10}
    return re.sub(r' (?=[^A-Za-z]|$)', '', out)


def _script(a):
    "A sub/superscript: a multi-letter Latin name upright (Tr, emp, fb), max/min as operators."
    if a in WORDS: return WORDS[a]
    if len(a) > 1 and a.isascii() and a.isalpha(): return rf'\mathrm{{{a}}}'
    return _sym(a).strip()


def _sup_str(s):
    return ''.join(SUPS.get(c, c) for c in s)


NOTATION = re.compile(
    rf'(?<![\w$\\/.\-])(?P<base>[A-Za-z{G}])(?P<scr>(?:[\^_][A-Za-z0-9{G}]+)+)(?P<sup>[{S}]*)(?P<arg>\([A-Za-z0-9{G},]{{1,6}}\))?(?![\w$])'
    rf'|‖(?P<norm>[^‖\s]{{1,12}})‖(?P<nsup>[{S}]*)'
    rf'|(?<![\w])(?P<num>\d+(?:\.\d+)?)(?P<nexp>[{S}]+)'
    rf'|(?P<greek>[{G}]\*?[{S}{B}]*)(?P<garg>\([A-Za-z0-9{G},]{{1,6}}\))?'
    rf'|(?P<lat>(?<![\w])[A-Za-z][{S}{B}]+)(?![\w])')


def _conv(m):
    g = m.groupdict()
    if g['base']:
        tex = _sym(g['base']).strip() + ''.join(f'{op}{{{_script(a)}}}' for op, a in re.findall(r'([\^_])([^\^_]+)', g['scr']))
        if g['sup']: tex = '{' + tex + '}^{' + _sup_str(g['sup']) + '}'
        if g['arg']: tex += _sym(g['arg'])
    elif g['norm']:
        tex = r'\lVert ' + NOTATION.sub(lambda m: _conv(m)[1:-1], g['norm']).strip() + r'\rVert' + (f"^{{{_sup_str(g['nsup'])}}}" if g['nsup'] else '')
    elif g['num']:
        tex = g['num'] + f"^{{{_sup_str(g['nexp'])}}}"
    elif g['greek']:
        gk = g['greek'].replace('*', '')
        tex = _sym(gk[0]).strip() + ('_*' if '*' in g['greek'] else '') + _sym(gk[1:]) + (_sym(g['garg']) if g['garg'] else '')
    else:
        tex = _sym(g['lat'])
    return f'\x01{tex.strip()}\x02'  # marked as ours until tidied


def texify(md):
    "Markdown `md` with raw notation written as LaTeX, with what surrounds a symbol folded in (`ρ = 0.3` -> `$\\rho = 0.3$`)."
    out = _outside(md, lambda s: NOTATION.sub(_conv, s))
    out = out.replace('\x02\x01', '')  # two symbols in a row are one formula (and `$$` would open display maths)
    F = r'\x01([^\x01\x02]+)\x02'
    out = re.sub(F + r' (=|≥|≤|≈|<|>) (-?\d+(?:\.\d+)?)(?!\w|\.\d)', lambda m: f'\x01{m[1]} {REL[m[2]]} {m[3]}\x02', out)
    out = re.sub(r'(?<![\w.$])(\d+(?:\.\d+)?/?)' + F, '\x01\\1\\2\x02', out)
    out = re.sub(F + '′', "\x01\\1'\x02", out)
    out = re.sub(r'\|' + F + r'\|', '\x01|\\1|\x02', out)
    out = re.sub(F + r' ?\$(?=\s*(=|<|>|\\le|\\ge|\\approx|\\langle|\\cdot|/))', '$\\1 ', out)  # joined to the formula after it
    return out.replace('\x01', '$').replace('\x02', '$')


REL = {'=': '=', '≥': r'\ge', '≤': r'\le', '<': '<', '>': '>', '≈': r'\approx'}


def fix(path, dry=False):
    "Typeset the raw notation of notebook `path`'s markdown cells in place, line by line; returns (lines changed, skipped)."
    text = Path(path).read_text()
    nb = json.loads(text)
    changed, skipped = 0, []
    for c in nb['cells']:
        if c['cell_type'] != 'markdown': continue
        src = ''.join(c['source'])
        new = texify(src)
        if new == src: continue
        for old_l, new_l in zip(src.splitlines(keepends=True), new.splitlines(keepends=True)):
            if old_l == new_l: continue
            o, n = json.dumps(old_l, ensure_ascii=False), json.dumps(new_l, ensure_ascii=False)
            if text.count(o) != 1: skipped.append(old_l.strip()); continue
            text = text.replace(o, n); changed += 1
            if dry: print(f'- {old_l.rstrip()}\n+ {new_l.rstrip()}')
    if changed and not dry:
        Path(path).write_text(text)
    return changed, skipped


if __name__ == '__main__':
    dry = '--dry' in sys.argv
    for p in [a for a in sys.argv[1:] if a != '--dry']:
        n, sk = fix(p, dry)
        print(f'{p}: {n} lines typeset' + (f'; not unique, left: {sk}' if sk else ''))

"""Write README.md from the markdown cells of nbs/index.ipynb (nbdev_readme needs Quarto, which CI lacks).
`python tools/readme.py` writes it; `python tools/readme.py --check` exits 1 if README.md is out of step."""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<!-- Generated from nbs/index.ipynb: keep the two in step (nbdev_readme needs Quarto, which CI lacks). -->\n\n'

def render() -> str:
    "README text: the header comment, then the index notebook's markdown cells."
    nb = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text())
    text = '\n\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown')
    # links to chapters are relative to nbs/ in the notebook (and the site); from the repository root they go through nbs/
    text = re.sub(r'\]\((?!https?:|/|#)([\w/.-]+\.ipynb)\)', r'](nbs/\1)', text)
    return HEADER + text + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT / 'README.md'
    if '--check' in sys.argv:
        ok = readme.read_text() == text
        print('README.md is in step with nbs/index.ipynb' if ok else 'README.md differs: run python tools/readme.py')
        sys.exit(0 if ok else 1)
    readme.write_text(text)

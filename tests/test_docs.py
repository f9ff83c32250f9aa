"""The rendered docs in a real browser: build two pages (one heavy in maths, one with a figure) the way `make docs`
does without Quarto, open them in headless Chromium, and check that MathJax typeset every formula without errors and that
every image loaded."""
import shutil, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DRIVER = shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                  "(.ci/run installs them)")


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--only', 'index', '01_hessian',
                        '--out', str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--allow-file-access-from-files', '--window-size=1300,900']:
        o.add_argument(a)
    o.binary_location = CHROMIUM
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    yield d
    d.quit()


def typeset(browser, page, timeout=60):
    browser.get(page.as_uri())
    js = ("return !!(window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
          "&& document.querySelectorAll('.mjx-chtml').length > 0)")
    t = time.time()
    while time.time() - t < timeout and not browser.execute_script(js): time.sleep(0.25)
    return (browser.execute_script("return document.querySelectorAll('.mjx-chtml').length"),
            browser.execute_script("return document.querySelectorAll('.MathJax_Error, .mjx-merror').length"),
            browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"))


@pytest.mark.parametrize('stem,min_images', [('index', 0), ('01_hessian', 1)])
def test_page_typesets_and_images_load(site, browser, stem, min_images):
    n_math, n_err, imgs = typeset(browser, site / f'{stem}.html')
    assert n_math > 5 and n_err == 0, (n_math, n_err)
    assert len(imgs) >= min_images and all(ok and w > 0 for ok, w in imgs), imgs
    assert 'Theory' in browser.find_element('id', 'fnb-sidebar').text

# flatness_nb: the two quick-start targets are `make demo` and `make test`.
PY ?= python3
# The CPU build of torch is installed first: an unpinned torch would pull a multi-GB CUDA build.
# On a machine with a GPU, override it, e.g. `make test TORCH=torch` (or keep the torch you have: TORCH=).
TORCH ?= torch==2.13.0

.PHONY: install demo test test-slow bench export clean-nbs docs

install:
	$(if $(TORCH),$(PY) -m pip install -q "$(TORCH)")
	$(PY) -m pip install -q -e ".[dev]"

demo: install
	$(PY) -m flatness_nb.demo

# every notebook once under nbdev_test, then pytest (pytest's closing line is what CI reads)
test: install
	nbdev_test --n_workers 2 --timing
	$(PY) -m pytest tests -q

test-slow: install
	nbdev_test --n_workers 1 --flags slow

bench: install
	$(PY) -m flatness_nb.benchmark --n 2000 --out bench.json

# Quarto site (nbdev_docs) if quarto is on PATH, else Sphinx + myst-nb + Furo (dev extras, from PyPI), fully offline:
# notebooks executed as nbdev_test does, sidebar from nbs/sidebar.yml, MathJax from Debian's libjs-mathjax -> _docs/
docs: install
	$(PY) tools/build_docs.py

export:
	nbdev_export && nbdev_clean && $(PY) tools/readme.py

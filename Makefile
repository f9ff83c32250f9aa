# flatness_nb: the two quick-start targets are `make demo` and `make test`.
#
# PY: the Python to use. Inside an active virtual or conda environment it is used as it is. Otherwise (a system Python,
# e.g. Debian's /usr/bin/python3, which refuses pip installs: PEP 668) make creates the project environment $(VENV) with
# it once and runs everything from there. VENV= turns that off (then PY must accept pip installs).
PY ?= python3
VENV ?= .venv
# torch is installed first, pinned. TORCH_INDEX is the wheel index it comes from; empty means pip's default (PyPI),
# whose Linux build of torch bundles CUDA (several GB). The CPU-only build: TORCH_INDEX=$(CPU_INDEX)
# TORCH= keeps the torch already installed in your environment (e.g. a GPU build): run make inside that environment.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
CPU_INDEX := https://download.pytorch.org/whl/cpu

IN_ENV := $(shell $(PY) -c "import os, sys; print(int(sys.prefix != sys.base_prefix or os.path.isdir(os.path.join(sys.prefix, 'conda-meta'))))" 2>/dev/null)
USE_VENV := $(if $(VENV),$(if $(filter 1,$(IN_ENV)),,yes))
ifneq ($(USE_VENV),)
  BASE_PY := $(PY)
  ENV_DIR := $(abspath $(VENV))
  override PY := $(ENV_DIR)/bin/python
  export VIRTUAL_ENV := $(ENV_DIR)
  export PATH := $(ENV_DIR)/bin:$(PATH)
  NEED_ENV := $(PY)
else
  # the environment's own scripts (nbdev_test, nbdev_export) first, even when PY points into an inactive environment
  ENV_BIN := $(shell $(PY) -c "import sysconfig; print(sysconfig.get_path('scripts'))" 2>/dev/null)
  export PATH := $(if $(ENV_BIN),$(ENV_BIN):)$(PATH)
endif

.PHONY: install demo test test-slow test-gpu bench export clean-nbs docs

ifneq ($(USE_VENV),)
$(ENV_DIR)/bin/python:
	@echo "creating the project environment $(VENV) with $(BASE_PY)"
	@$(BASE_PY) -m venv "$(ENV_DIR)" || { rm -rf "$(ENV_DIR)"; echo "make: could not create $(VENV) with $(BASE_PY): it must be a Python >= 3.10 with its venv module \
	(Debian/Ubuntu: apt install python3-venv); or run make inside an environment of your own"; exit 1; }
endif

install: $(NEED_ENV)
	$(if $(TORCH),$(PY) -m pip install -q "$(TORCH)"$(if $(TORCH_INDEX), --index-url $(TORCH_INDEX)))
	$(PY) -m pip install -q -e ".[dev]"

demo: install
	$(PY) -m flatness_nb.demo

# every notebook once under nbdev_test, then pytest (pytest's closing line is what CI reads)
test: install
	nbdev_test --n_workers 2 --timing
	$(PY) -m pytest tests -q

test-slow: install
	nbdev_test --n_workers 1 --flags slow

# the device check: every notebook (gpu cells included) and pytest with FLATNESS_DEVICE=cuda, then the benchmark, in one
# run with its own time limits (tools/gpu_check.py, 8 min); it keeps the torch you have (a CUDA build) and says so
# plainly where CUDA is missing. The same steps on the CPU: $(PY) tools/gpu_check.py --device cpu
test-gpu: TORCH =
test-gpu: install
	$(PY) tools/gpu_check.py $(GPU_ARGS)

bench: install
	$(PY) -m flatness_nb.benchmark --n 2000 --out bench.json

# Quarto site (nbdev_docs) if quarto is on PATH, else Sphinx + myst-nb + Furo (dev extras, from PyPI), fully offline:
# notebooks executed as nbdev_test does, sidebar from nbs/sidebar.yml, MathJax from Debian's libjs-mathjax -> _docs/
docs: install
	$(PY) tools/build_docs.py

export:
	nbdev_export && nbdev_clean && $(PY) tools/readme.py

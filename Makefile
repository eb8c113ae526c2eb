# The README's commands. Each creates (or reuses) the virtualenv in $(VENV)
# and installs what it needs; a fresh machine needs only python3 >= 3.10.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.14.1 + torchvision 0.29.1 lie on these machines' disk; override elsewhere.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Where torch comes from. Empty: on Linux without an NVIDIA GPU the CPU wheel index
# (download.pytorch.org/whl/cpu) when it answers within 3 s, else the configured index
# (PyPI's default build, which bundles CUDA); see tools/choose_torch.py and docs/install.md.
TORCH_INDEX ?=
STAMP := $(VENV)/.attribkit-installed
OUT ?= demo-out

.PHONY: demo test bench bench-kernels bench-gpu install clean

install: $(STAMP)

PLUGINS := plugins/attribkit-example plugins/attribkit-captum plugins/attribkit-jax plugins/attribkit-keras

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) tools/choose_torch.py install --python $(PY) --spec "$(TORCH_SPEC)" --index "$(TORCH_INDEX)"
	$(PY) -m pip install --quiet -e '.[dev,all]' $(addprefix -e ,$(PLUGINS))
	$(PY) tools/choose_torch.py report --venv $(VENV)
	touch $@

# OpenMP threads that sleep while they wait (unless OMP_WAIT_POLICY is set): with torch's spinning
# default, a 2-core machine with one other busy process made each forward ~25x slower (README)
demo: $(STAMP)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(VENV)/bin/attribkit demo --out $(OUT)

# one pytest worker per core (at most 4), each test file on one worker (its module fixtures built once)
test: $(STAMP)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile

# speed + faithfulness of every built-in method on the reference model (quick profile)
bench: $(STAMP)
	$(VENV)/bin/attribkit bench --profile quick --out bench-out

# pytest-benchmark suites: kernels vs floors and peers on torchvision models
bench-kernels: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-only -q

# the headline comparisons on one CUDA GPU in <= 8 minutes: gpu-out/gpu.json and gpu-out/gpu.md
# (make bench-gpu GPU_ARGS=--dry-run: the same code on the CPU at tiny sizes)
bench-gpu: $(STAMP)
	PYTHON=$(PY) benchmarks/gpu.sh $(GPU_ARGS)

# optional, not needed by `make test`: a second virtualenv with transformers<5 (LXT 2.1's tested
# 4.52.4) for LXT's LLaMA / GPT-2 patches, the reference of tests/lxt_reference/run_lxt_llm.py
LXT_VENV ?= .venv-lxt
.PHONY: lxt-venv
lxt-venv:
	test -x $(LXT_VENV)/bin/python || $(PYTHON) -m venv $(LXT_VENV)
	$(LXT_VENV)/bin/python tools/choose_torch.py install --python $(LXT_VENV)/bin/python --spec "$(TORCH_SPEC)" --index "$(TORCH_INDEX)"
	$(LXT_VENV)/bin/python -m pip install --quiet numpy "transformers==4.52.4" tabulate
	$(LXT_VENV)/bin/python -m pip install --quiet --no-deps "lxt==2.1"

clean:
	rm -rf $(VENV) $(OUT) bench-out .pytest_cache .benchmarks

# Two entry points, each builds the environment it needs from nothing but Python:
#   make demo   the whole story on the bundled sample dataset
#   make test   ruff + pytest
# CPU torch by default (a CPU build of 2.13.0 is installable from local disk here);
# on a GPU machine pass your own, e.g. `make test TORCH="torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cu128"`.
# torch and the project go in ONE pip call (one resolver pass, each download once); that is why a CUDA index is
# an --extra-index-url: the project's other dependencies still come from the default index.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@# pip older than 23 cannot install a pyproject-only project in editable mode; a newer one is left alone.
	$(BIN)/python -c "import pip, sys; sys.exit(int(pip.__version__.split('.')[0]) < 23)" \
		|| $(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip

# The stamp files depend on pyproject.toml, so a changed dependency list reinstalls.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH) -e ".[test]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/doctor demo --out $(DEMO_OUT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT)

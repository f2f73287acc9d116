# Two commands for a newcomer on a fresh machine (see README):
#   make run    # set up .venv, then run the agent on the embedded MuJoCo world with the shipped checkpoint
#   make test   # set up .venv, then run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run test bench eval mutation clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build, so nothing below pulls a multi-GB CUDA wheel
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.4,<2.15" --index-url https://download.pytorch.org/whl/cpu

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m v4s_agent.run $(ARGS)

test: setup
	$(BIN)/python -m pytest tests -q $(ARGS)

bench: setup
	$(BIN)/python -m v4s_agent.bench sim
	$(BIN)/python -m v4s_agent.bench generate

# mutation testing of the core decision modules ([tool.mutmut] in pyproject.toml): slow, not in CI
mutation: setup
	nice -n 5 $(BIN)/mutmut run
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) outputs .pytest_cache mutants

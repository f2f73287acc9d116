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

# mutation testing of the core decisions ([tool.mutmut] in pyproject.toml): slow, not in CI.
# mutmut prints each mutant's verdict; the last line is the score table; `mutmut show NAME` shows a mutant's diff.
MUTATION_SCOPE ?= 'envs.geometry.x_target_centred__*' 'planners.base.x_is_centred__*' 'planners.base.x_should_stop__*' \
	'envs.metrics.x_objectnav_metrics__*' 'models.conditioning.*' 'models.red_box.*' \
	'envs.navgrid.x_grid_cells__*' 'envs.navgrid.x?NavGrid?cell_of__*' 'envs.navgrid.x?NavGrid?cells_of__*' \
	'envs.navgrid.x?NavGrid?_inside*' 'envs.navgrid.x?NavGrid?is_navigable__*' 'envs.navgrid.x?NavGrid?segment_free__*' \
	'models.memory.x?Memory?_features__*' 'models.memory.x?Memory?select_indices__*' 'models.memory.x?Memory?select_context__*'
mutation: setup
	nice -n 10 $(BIN)/mutmut run $(MUTATION_SCOPE)
	$(BIN)/python tests/mutation_score.py $(MUTATION_SCOPE)

clean:
	rm -rf $(VENV) outputs .pytest_cache mutants

# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv when it is missing and installs the pinned set (a no-op when up to date).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The small default benchmark of `make run`: SAC, TD3, QSM and Diffusion-QL, 3 seeds, Pendulum-v1, ~17 min
# on 2 CPU cores, then `qsmbench plot` of the results (raw returns: Pendulum has no published reference
# score). DIPO, QVPO, DACER, SDAC and DPMD are left out for their CPU cost (QVPO at its official sizes:
# about 3 s per update and seed on one thread); add one with e.g. RUN_ALGOS="sac td3 qsm dql dacer".
RUN_ENV ?= Pendulum-v1
RUN_SEEDS ?= 3
RUN_STEPS ?= 8000
RUN_ALGOS ?= sac td3 qsm dql
RUN_OUT ?= results
RUN_FLAGS ?= --eval-every 1000 --eval-episodes 10 --set warmup_steps=1000 --name ''
# Narrower diffusion policies keep the default benchmark within CPU budget (official: QSM 512-512,
# Diffusion-QL 256-256-256); the update rules are the official ones.
RUN_SET_qsm ?= --set hidden_sizes=256,256 --set actor_hidden_sizes=256,256
RUN_SET_dql ?= --set hidden_sizes=128,128 --set actor_hidden_sizes=128,128

.PHONY: run test lint install clean reproduce-paper

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,ray,video,track]"
	touch $(STAMP)

run: $(STAMP)
	$(foreach algo,$(RUN_ALGOS),$(BIN)/qsmbench run --algo $(algo) --env $(RUN_ENV) --seeds $(RUN_SEEDS) \
	  --steps $(RUN_STEPS) --out $(RUN_OUT) --overwrite $(RUN_FLAGS) $(RUN_SET_$(algo)) &&) true
	$(BIN)/qsmbench plot $(RUN_OUT)
	@echo "Learning curves: $(RUN_OUT)/$(RUN_ENV)/<algo>/seed_<k>.parquet"

# The QSM paper grid: every task x algorithm, 10 seeds, 1M steps each, then plots into
# results/paper/_figures. Resumable: run it again after a stop; complete runs are skipped.
REPRODUCE_FLAGS ?=
reproduce-paper: $(STAMP)
	$(BIN)/qsmbench reproduce paper $(REPRODUCE_FLAGS)

# Lint (ruff), the import layers (import-linter: core -> algorithms -> envs | runs -> training -> analysis : grid :
# tools -> cli, see pyproject.toml), then the tests on TEST_WORKERS processes of one torch thread each
# (tests/conftest.py); the Ray tests share one worker (--dist loadgroup).
TEST_WORKERS ?= 2
test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# import-linter reads a package from its folder, and algorithms/ is installed as qsmbench/algorithms: it checks a
# copy laid out as installed (build/ is ignored by git).
LAYERS := build/layers
lint: $(STAMP)
	$(BIN)/ruff check .
	rm -rf $(LAYERS) && mkdir -p $(LAYERS) && cp -r qsmbench $(LAYERS)/ && cp -r algorithms $(LAYERS)/qsmbench/algorithms
	cd $(LAYERS) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache

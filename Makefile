# Two entry points do all set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv when it is missing and installs the pinned set (a no-op when up to date).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The small default benchmark of `make run`: every algorithm, 3 seeds, Pendulum-v1, ~11 min on 2 CPU cores.
RUN_ENV ?= Pendulum-v1
RUN_SEEDS ?= 3
RUN_STEPS ?= 8000
RUN_ALGOS ?= sac td3 qsm
RUN_OUT ?= results
RUN_FLAGS ?= --eval-every 1000 --eval-episodes 10 --set warmup_steps=1000
# QSM's official networks are 512 wide; 256 keeps the default benchmark within CPU budget.
RUN_SET_qsm ?= --set hidden_sizes=256,256 --set actor_hidden_sizes=256,256

.PHONY: run test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(foreach algo,$(RUN_ALGOS),$(BIN)/qsmbench run --algo $(algo) --env $(RUN_ENV) --seeds $(RUN_SEEDS) \
	  --steps $(RUN_STEPS) --out $(RUN_OUT) --overwrite $(RUN_FLAGS) $(RUN_SET_$(algo)) &&) true
	@echo "Learning curves: $(RUN_OUT)/$(RUN_ENV)/<algo>/seed_<k>.parquet"

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache

# dynrec developer commands. `make setup && make test` works on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DEMO ?= demo

.PHONY: setup test test-fast bench demo lint clean

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: any other spec pulls a CUDA build with gigabytes of packages
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# LPIPS linear heads are data files of the lpips wheel; --no-deps keeps torchvision out
	$(BIN)/python -m pip install --quiet --no-deps lpips==0.1.4
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is not None)" \
		|| (echo "torchvision got installed; it must not be (see DESIGN.md)" && exit 1)

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench:
	$(BIN)/python -m bench

lint:
	$(BIN)/ruff check dynrec tests bench

# `dynrec evaluate` exits with 2 when some metrics could not be computed (e.g. network weights
# not installed); the table says why, and the demo still succeeds.
demo:
	rm -rf $(DEMO)
	$(BIN)/dynrec synth $(DEMO)/scene --preset small --seed 0
	$(BIN)/dynrec preprocess $(DEMO)/scene/video.mp4 -o $(DEMO)/work --gt $(DEMO)/scene
	$(BIN)/dynrec reconstruct $(DEMO)/work --steps 300 --set recon.lr_scale=5
	$(BIN)/dynrec status $(DEMO)/work
	$(BIN)/dynrec evaluate $(DEMO)/work || [ $$? -eq 2 ]
	@echo "look first at: $(DEMO)/work/eval/side_by_side.mp4 and $(DEMO)/work/eval/plots/*.png"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache

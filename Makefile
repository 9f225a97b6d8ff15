# dynrec developer commands. `make setup && make test` works on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DEMO ?= demo

.PHONY: setup test test-fast bench gpu-check demo lint clean

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: any other spec pulls a CUDA build with gigabytes of packages
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# LPIPS linear heads are data files of the lpips wheel; --no-deps keeps torchvision out
	$(BIN)/python -m pip install --quiet --no-deps lpips==0.1.4
	$(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is not None)" \
		|| (echo "torchvision got installed; it must not be (see docs/DESIGN.md)" && exit 1)

test:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench:
	$(BIN)/python -m bench

# On a machine with one CUDA GPU (its python3 holding a CUDA torch): gsplat from wheel files
# when there is no internet (WHEELS="gsplat-1.5.3-py3-none-any.whl av-....whl ..."), CUDA tests,
# rasterizer timing at 480p, synth small reconstructed with the GPU schedule; writes
# bench/results/gpu.json in under 10 minutes. Exits with 2 and a message without CUDA.
# Wheels for an offline machine with Python 3.12, fetched where pip works (pycolmap is not needed):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl av tomli-w gsplat==1.5.3
#   make gpu-check WHEELS="$(ls .whl/*.whl)"
GPU_PY ?= python3
gpu-check:
	$(GPU_PY) bench/gpu_check.py $(foreach w,$(WHEELS),--wheel $(w))

lint:
	$(BIN)/ruff check dynrec tests bench

# `dynrec evaluate` exits with 2 when some metrics could not be computed (e.g. network weights
# not available offline); the table says why, and the demo still succeeds. The demo ends with
# what each number means and whether it meets the project's targets (bench/demo_summary.py).
demo:
	rm -rf $(DEMO)
	$(BIN)/dynrec synth $(DEMO)/scene --preset small --seed 0
	$(BIN)/dynrec preprocess $(DEMO)/scene/video.mp4 -o $(DEMO)/work --gt $(DEMO)/scene
	# the same video through the offline backends (no models, no ground truth used): tracks,
	# masks, cameras, keypoints from the pixels alone; the scene is kept only for evaluation
	$(BIN)/dynrec preprocess $(DEMO)/scene/video.mp4 -o $(DEMO)/work-offline --offline --gt $(DEMO)/scene
	@echo "$(DEMO)/work-offline: the inputs estimated from the pixels alone (compare them with \`dynrec inspect\`);"
	@echo "  not reconstructed here to keep the demo short: \`dynrec reconstruct $(DEMO)/work-offline\` does it"
	cp -r $(DEMO)/work $(DEMO)/work-sirenpose
	$(BIN)/dynrec reconstruct $(DEMO)/work --steps 300 --set recon.lr_scale=5 --set recon.lr_final=0.05 --set recon.gaussian_densify=false
	$(BIN)/dynrec status $(DEMO)/work
	# evaluate fetches the metric networks' weights on first use (LPIPS, CLIP, FID, FVD: about 1 GB, see
	# `dynrec weights list`); with DYNREC_OFFLINE=1 those metrics show as not computed instead
	$(BIN)/dynrec evaluate $(DEMO)/work || [ $$? -eq 2 ]
	# the same reconstruction with SirenPose on (keypoint loss + SIREN stream, docs/sirenpose.md)
	$(BIN)/dynrec reconstruct $(DEMO)/work-sirenpose --steps 300 --set recon.lr_scale=5 --set recon.lr_final=0.05 --set recon.gaussian_densify=false --set recon.sirenpose=full
	$(BIN)/dynrec evaluate $(DEMO)/work-sirenpose --metrics psnr,kp_err,kp_pck,epe_3d,pck_t,mpsnr --no-video \
		|| [ $$? -eq 2 ]
	@$(BIN)/python -m bench.demo_summary $(DEMO)
	# new viewpoints and files for other tools: an orbit around the figure with its skeleton
	# drawn on a copy, then every export format (docs/export.md)
	$(BIN)/dynrec render $(DEMO)/work --path orbit --overlay skeleton
	$(BIN)/dynrec export $(DEMO)/work --format all -o $(DEMO)/export
	@echo "look first at: $(DEMO)/work/eval/side_by_side.mp4, $(DEMO)/work/eval/plots/*.png and $(DEMO)/work/renders/orbit/rgb.mp4"
	@echo "explore it: $(BIN)/dynrec view $(DEMO)/work   (then open http://localhost:8080)"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache

# artem — the two commands of the README are `make demo` and `make test`; each installs what is missing.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .installed
, := ,
DEMO_OUT ?= demo_out.png

.PHONY: install install-demo weights demo test kernels gpu-check gpu-rehearsal bench clean

# artem of this checkout (editable) with the extras a target needs, and the `artem` command on PATH:
# installed again where pyproject.toml changed, or where $(PYTHON) (another virtual environment) imports
# no artem of this checkout or not the extras' modules (the working folder, '' on the path of -c, taken
# off it first; -E: nor PYTHONPATH; not -I, which would leave out the user's site-packages, where pip may
# have installed it)
define install_with
	@[ $(STAMP) -nt pyproject.toml ] && $(PYTHON) -E -c "import pathlib, sys; sys.path[:] = [p for p in sys.path if p]; \
		import artem_cli, $(2); \
		sys.exit(pathlib.Path(artem_cli.__file__).resolve().parents[1] != pathlib.Path.cwd().resolve())" 2>/dev/null \
		|| { $(PIP) install --quiet --disable-pip-version-check -e '.[$(1)]' && touch $(STAMP); }
	-@command -v pyenv >/dev/null 2>&1 && pyenv rehash
endef

# the tests' extras: the converter, PyOpenCL and PoCL, NVRTC, Dask (hundreds of MB)
install:
	$(call install_with,dev,pytest$(,) pyopencl$(,) distributed$(,) onnx)

# the demo's: the converter alone
install-demo:
	$(call install_with,convert,onnx$(,) h5py)

# the reference ImageNet VGG16, converted to weights/vgg16.npz and checked against weights/manifest.json
weights: install-demo
	$(PYTHON) -m artem_cli weights fetch

demo: weights
	$(PYTHON) -m artem_cli stylize examples/chelsea.png examples/ihc.png \
		-o $(DEMO_OUT) --size 256 --iterations 100 --overwrite
	@echo "wrote $(DEMO_OUT)"

test: install weights
	$(PYTHON) -m pytest -q

# every CUDA kernel must compile for the A100's and the H100's architectures (CI has nvcc, no GPU);
# ptxas says what each uses (registers, spills, shared memory)
kernels:
	@for src in kernels/*.cu; do for arch in sm_80 sm_90; do echo "$$src $$arch:"; \
		log=$$(nvcc -cubin -arch=$$arch -Xptxas -v -o /dev/null $$src 2>&1) || { echo "$$log"; exit 1; }; \
		echo "$$log" | grep -E "registers|spill" || true; \
		done; done

# on a machine with a GPU: the GPU tests, compute-sanitizer and the benchmarks, reports in $(OUT)
OUT ?= gpu-check
gpu-check:
	.ci/gpu-check $(OUT)

# before a GPU session, on any machine: tests/test_gpu.py with tests/cupy_on_numpy as CuPy and the
# kernels under the CUDA emulator (tests/stand_in_gpu.py); about 20 min on 2 CPUs
gpu-rehearsal: install weights
	PYTHONPATH=tests $(PYTHON) -m pytest -q -p stand_in_gpu -p no:cacheprovider --durations=10 tests/test_gpu.py

bench: weights
	$(PYTHON) -m artem_cli benchmark --size 512 --layers

clean:
	rm -rf $(STAMP) *.egg-info .pytest_cache $(DEMO_OUT)

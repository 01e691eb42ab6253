# artem — the two commands of the README are `make demo` and `make test`; each installs what is missing.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .installed
DEMO_OUT ?= demo_out.png

.PHONY: install weights demo test kernels bench clean

# artem (editable, with the converter and test extras), and the `artem` command on PATH
install: $(STAMP)
$(STAMP): pyproject.toml
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	-@command -v pyenv >/dev/null 2>&1 && pyenv rehash
	@touch $(STAMP)

# the reference ImageNet VGG16, converted to weights/vgg16.npz and checked against weights/manifest.json
weights: install
	$(PYTHON) -m artem_cli weights fetch

demo: weights
	$(PYTHON) -m artem_cli stylize examples/chelsea.png examples/ihc.png \
		-o $(DEMO_OUT) --size 256 --iterations 100 --overwrite
	@echo "wrote $(DEMO_OUT)"

test: weights
	$(PYTHON) -m pytest -q

# every CUDA kernel must compile for the A100's and the H100's architectures (CI has nvcc, no GPU)
kernels:
	@for src in kernels/*.cu; do for arch in sm_80 sm_90; do \
		nvcc --ptx -arch=$$arch -o /dev/null $$src || exit 1; done; echo "$$src: sm_80 sm_90"; done

bench: weights
	$(PYTHON) -m artem_cli benchmark --size 512 --layers

clean:
	rm -rf $(STAMP) *.egg-info .pytest_cache $(DEMO_OUT)

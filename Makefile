# Callbox: the two commands are `make run` and `make test`. Each sets up what
# it needs (Debian packages, .venv, the compiled core) and skips what is done.

# Debian's Python is the one the appliance image runs; fall back to PATH's.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CORE_SOURCES := $(shell find core -name '*.cpp' -o -name '*.h')
EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
CORE_EXT := core/_core$(EXT_SUFFIX)
ASAN_RUNTIME = $(shell g++ -print-file-name=libasan.so)
UBSAN_RUNTIME = $(shell g++ -print-file-name=libubsan.so)

.PHONY: run test lint typecheck test-core-sanitize bench deps clean image image-test iso iso-test image-repro

## run: set up and start the appliance on embedded defaults (Ctrl-C stops it)
run: $(VENV)/.installed $(CORE_EXT)
	$(VENV)/bin/callbox run

## test: set up, then lint, type-check and run the whole suite (core also under ASan/UBSan)
test: $(CORE_EXT) lint typecheck test-core-sanitize
	$(PY) -m pytest

lint: $(VENV)/.installed $(CORE_EXT)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

## the core's tests once more against the sanitizer build (core._core_sanitize)
test-core-sanitize: core/_core_sanitize$(EXT_SUFFIX)
	CALLBOX_CORE=sanitize LD_PRELOAD="$(ASAN_RUNTIME) $(UBSAN_RUNTIME)" \
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(PY) -m pytest -q -p no:cacheprovider --capture=sys tests/core

core/_core_sanitize$(EXT_SUFFIX): $(VENV)/.installed $(CORE_SOURCES) setup.py
	CALLBOX_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --build-temp build/sanitize

# pip install -e builds the core once; later source changes rebuild it in place.
$(CORE_EXT): $(VENV)/.installed $(CORE_SOURCES) setup.py
	$(PY) setup.py -q build_ext --inplace --build-temp build/native
	touch $@


## bench: kernels, capacity against the echo floor, jitter quality, the whole box's capacity
## (callbox bench capacity); results in benchmarks/results/
## (CAPACITY_FLAGS / SIP_LOAD_FLAGS / BENCH_CAPACITY_FLAGS: --quick for a smoke run,
## --realtime on a busy machine)
CAPACITY_FLAGS ?=
SIP_LOAD_FLAGS ?=
BENCH_CAPACITY_FLAGS ?=
bench: $(VENV)/.installed $(CORE_EXT) build/loadgen
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.capacity --record $(CAPACITY_FLAGS)
	$(PY) -m benchmarks.rtpengine_peer $(CAPACITY_FLAGS)
	$(PY) -m benchmarks.plot_capacity
	$(PY) -m benchmarks.jitter_quality
	$(PY) -m benchmarks.sip_load $(SIP_LOAD_FLAGS)
	$(VENV)/bin/callbox bench capacity --output benchmarks/results/capacity.json --plot benchmarks/results/capacity-box.png $(BENCH_CAPACITY_FLAGS)

# The capacity benchmark's RTP load generator and echo floor: a standalone program, not part of the core.
build/loadgen: benchmarks/loadgen/loadgen.cpp
	mkdir -p build
	g++ -std=c++20 -O2 -Wall -Wextra -Werror -o $@ $<

## image: the bootable appliance disk image, image/build/callbox.{img,qcow2} (needs root)
IMAGE := image/build/callbox.qcow2
# The ISO's own script and the ISO test's stamp are not the disk image's sources.
IMAGE_SOURCES := $(shell find image -path image/build -prune -o -type f \
	! -name build-iso.sh ! -name iso-tested ! -name repro.sh -print) \
	$(shell find appliance hw core -name '*.py' -o -name '*.pyi' -o -name '*.html') \
	$(CORE_SOURCES) pyproject.toml setup.py
image: $(IMAGE)
$(IMAGE): $(VENV)/.installed $(IMAGE_SOURCES)
	image/build.sh

## image-test: boot the image under qemu (BIOS and UEFI) and call it (needs root)
image-test: $(IMAGE)
	$(PY) -m pytest -p no:cacheprovider tests/image/test_image_boot.py

## iso: the installer ISO, image/build/callbox-installer.iso (live system and installer; needs root)
ISO := image/build/callbox-installer.iso
iso: $(ISO)
$(ISO): $(IMAGE) image/build-iso.sh
	image/build-iso.sh

## iso-test: install from the ISO to a blank disk under qemu, boot that disk and call it;
## on success image/iso-tested records which image/ passed (make test runs it only when image/ changed)
iso-test: $(ISO)
	CALLBOX_ISO_TEST=always $(PY) -m pytest -p no:cacheprovider tests/image/test_iso_install.py
	$(PY) -m tests.image.iso_stamp write

## image-repro: build the image twice from this commit and compare the raw disks byte for byte
image-repro: $(VENV)/.installed
	image/repro.sh

deps:
	scripts/install-system-deps

# The venv is rebuilt when the package metadata changes; the core when its sources do.
$(VENV)/.installed: pyproject.toml setup.py scripts/install-system-deps
	scripts/install-system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel pybind11 cython
	$(PY) -m pip install -q --no-build-isolation -e '.[test,bench]'
	touch $@

clean:
	rm -rf build $(VENV) core/*.so hw/*.so *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The shared recipe of the dependency layers (template.yaml: BuildMethod: makefile). `sam build`
# runs `make build-<LogicalId>` with ARTIFACTS_DIR set; each layer's Makefile includes this file.
#
#   1. pip-installs the layer's hash-pinned requirements.txt for Lambda (CPython 3.12, manylinux
#      x86_64 wheels only, whatever the build machine is) into $(ARTIFACTS_DIR)/python;
#   2. prunes what a Lambda never needs and strips debug symbols (layers/prune_layer.py);
#   3. with COMPILE=1, ships bytecode compiled by python3.12 with --invalidation-mode unchecked-hash:
#      SAM zips every file with a 1980 timestamp, so timestamp-checked .pyc would be stale on
#      Lambda (and /opt is read-only, so every cold start would compile every module again).
#
# The requirements files are generated: `make locks` at the repository root.

PYTHON312 ?= python3.12
LAYERS_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PIP_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

# $(1): requirements file, $(2): 1 to ship unchecked-hash .pyc, 0 not to, $(3): botocore services
# whose API models to keep (empty: all)
define build_layer
	rm -rf "$(ARTIFACTS_DIR)/python"
	mkdir -p "$(ARTIFACTS_DIR)/python"
	$(PYTHON312) -m pip install --quiet --disable-pip-version-check --no-compile --no-deps --require-hashes \
	  --only-binary=:all: --implementation cp --python-version 3.12 --abi cp312 $(PIP_PLATFORMS) \
	  --target "$(ARTIFACTS_DIR)/python" -r "$(1)"
	$(PYTHON312) "$(LAYERS_DIR)/prune_layer.py" "$(ARTIFACTS_DIR)/python" --compile $(2) --botocore-services "$(3)"
endef

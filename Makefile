# The two set-up commands (see README):
#   make serve   build everything and serve functions/digits on http://127.0.0.1:8080
#   make test    build everything and run the tests
# Both create .venv on first use; pip's download cache makes later runs fast.

VENV ?= .venv
PYTHON ?= python3
PORT ?= 8080
PIP := $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c packaging/constraints.txt

.PHONY: serve test docs tools browser podman java bench check clean grpc-descriptors

# A current pip: the one a venv starts with may predate the wheels' metadata (and then blames the Python).
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# The runtime alone: what a deployed ONNX function carries, and Pillow for functions/digits' photos.
$(VENV)/.runtime: pyproject.toml packaging/constraints.txt | $(VENV)/bin/python
	$(PIP) -e . pillow
	@touch $@

# Tests, benchmarks and the digits training script (TensorFlow, scikit-learn).
$(VENV)/.dev: pyproject.toml packaging/constraints.txt | $(VENV)/bin/python
	$(PIP) -e ".[dev,train]"
	@touch $@ $(VENV)/.runtime

# Offline checkers of the deployment files (tests/infra): checkov in its own environment (it pins
# many packages of its own) and osls, the maintained fork of Serverless Framework v3, with
# serverless-offline (API Gateway emulated in front of the zips), from npm (locked in packaging/tools/;
# serverless-offline 14 declares a peer range that osls 4 falls outside of, hence --legacy-peer-deps).
# Terraform is the machine's own (see README, "Deploy").
TOOLS ?= .tools
CHECKOV_VERSION ?= 3.3.30

$(TOOLS)/checkov/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

$(TOOLS)/node_modules/.bin/sls: packaging/tools/package.json packaging/tools/package-lock.json
	mkdir -p $(TOOLS) && cp packaging/tools/package.json packaging/tools/package-lock.json $(TOOLS)/
	npm ci --silent --no-audit --no-fund --legacy-peer-deps --prefix $(TOOLS)
	@touch $@

# The peers' own clients for tests/protocols/test_peer_clients.py: the kserve SDK and MLServer pin
# versions of protobuf, pandas, fastapi and starlette that clash with each other and with the ML
# stack, so each lives in an environment of its own, pinned whole (packaging/tools/<name>.txt).
$(TOOLS)/%/.installed: packaging/tools/%.txt
	rm -rf $(TOOLS)/$* && $(PYTHON) -m venv $(TOOLS)/$*
	$(TOOLS)/$*/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

# The google and google-beta providers' schemas, as the CDK prebuilt providers carry them (the
# providers themselves cannot be downloaded here): tests/infra/test_google_schema.py reads them.
GOOGLE_PROVIDER ?= 21.1.0
$(TOOLS)/google-provider/.downloaded:
	mkdir -p $(TOOLS)/google-provider
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps -d $(TOOLS)/google-provider \
		cdktn-provider-google==$(GOOGLE_PROVIDER) cdktn-provider-google-beta==$(GOOGLE_PROVIDER)
	@touch $@

# The official Lambda Runtime Interface Emulator (a static binary inside PyPI's aws-sam-cli wheel:
# unzipped from it, no SAM install) and what Lambda's Python runtime brings (awslambdaric, boto3),
# for tests/adapters/test_lambda_emulator.py.
SAM_CLI ?= 1.170.0
AWSLAMBDARIC ?= 4.2.2
$(TOOLS)/lambda/.installed:
	rm -rf $(TOOLS)/lambda && mkdir -p $(TOOLS)/lambda
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps -d $(TOOLS)/lambda aws-sam-cli==$(SAM_CLI)
	$(PYTHON) -c "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('samcli/local/rapid/aws-lambda-rie-x86_64'))" \
		$(TOOLS)/lambda/aws_sam_cli-$(SAM_CLI)-py3-none-any.whl $(TOOLS)/lambda/aws-lambda-rie
	chmod +x $(TOOLS)/lambda/aws-lambda-rie && rm $(TOOLS)/lambda/aws_sam_cli-*.whl
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -c packaging/constraints.txt \
		--target $(TOOLS)/lambda/runtime awslambdaric==$(AWSLAMBDARIC) boto3
	@touch $@

# The batch engines (tests/beam, tests/spark, bench/batch.py): Apache Beam and Spark pin protobuf
# and Pillow below what the training set needs, so they have an environment of their own, pinned
# whole, with this checkout installed into it (editable, so it runs the code under test).
$(TOOLS)/engines/.installed: packaging/tools/engines.txt pyproject.toml
	rm -rf $(TOOLS)/engines && $(PYTHON) -m venv $(TOOLS)/engines
	$(TOOLS)/engines/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	$(TOOLS)/engines/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

tools: $(TOOLS)/engines/.installed $(TOOLS)/checkov/bin/checkov $(TOOLS)/node_modules/.bin/sls $(TOOLS)/kserve/.installed \
	$(TOOLS)/mlserver/.installed $(TOOLS)/google-provider/.downloaded $(TOOLS)/lambda/.installed

# Headless Chromium for the web page's browser test: Debian's package, driven by Playwright
# (Playwright's own browser download needs the internet; the system Chromium does not).
browser:
	@command -v chromium > /dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing Chromium (apt-get install chromium)"; \
		$$SUDO apt-get install -y -qq chromium > /dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium > /dev/null; }; }

# podman, runc and debootstrap for the image tests (tests/tooling/test_images.py): Debian's
# packages, as root; where apt cannot install them the test skips and says why.
podman:
	@command -v podman > /dev/null && command -v runc > /dev/null && command -v debootstrap > /dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing podman, runc and debootstrap (apt-get install podman runc debootstrap uidmap)"; \
		$$SUDO apt-get install -y -qq podman runc debootstrap uidmap > /dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq podman runc debootstrap uidmap > /dev/null; } || \
		echo "podman could not be installed: the image tests will skip"; }

# A Java runtime for local Spark (tests/test_spark.py): Debian's headless JRE where none is installed.
java:
	@command -v java > /dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		echo "installing Java for Spark (apt-get install openjdk-17-jre-headless)"; \
		$$SUDO apt-get install -y -qq openjdk-17-jre-headless > /dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq openjdk-17-jre-headless > /dev/null; }; }

# The gRPC server's message descriptors from src/modelfn/adapters/grpc_oip/*.proto (grpcio-tools is in
# the kserve environment; tests/adapters/test_grpc_oip.py checks the file is what the .proto files give).
grpc-descriptors: $(TOOLS)/kserve/.installed
	$(TOOLS)/kserve/bin/python packaging/tools/grpc_descriptors.py

serve: $(VENV)/.runtime
	@echo "modelfn is installed in $(VENV): run '. $(VENV)/bin/activate' in another shell to use the modelfn command"
	$(VENV)/bin/modelfn serve functions/digits --port $(PORT)

# The documentation site, in an environment of its own (modelfn's core and the docs extra only).
DOCS_VENV ?= .venv-docs
$(DOCS_VENV)/.installed: pyproject.toml packaging/constraints.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c packaging/constraints.txt -e ".[docs]"
	@touch $@

docs: $(DOCS_VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir build/site

test: $(VENV)/.dev tools browser podman java docs
	$(VENV)/bin/ruff check src tests bench functions
	$(VENV)/bin/ruff format --check src tests bench functions
	$(VENV)/bin/python -m mypy
	$(VENV)/bin/python -m pytest

check: $(VENV)/.runtime
	$(VENV)/bin/modelfn check functions/digits

bench: $(VENV)/.dev
	$(VENV)/bin/python bench/coldstart.py

clean:
	rm -rf $(VENV) $(TOOLS) functions/*/.modelfn

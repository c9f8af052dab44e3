# Pulseboard developer entry points. Local tools (Java, DynamoDB Local, and for
# `template` a Python venv with cfn-lint/sam/cargo-lambda) are installed on demand by
# scripts/tools.sh into $PULSEBOARD_CACHE (default ~/.cache/pulseboard), outside the clone.
# See docs/TOOLING.md.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Extra arguments, e.g.  make test TEST_ARGS='-p shared -- --nocapture'
TEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help tools run test fuzz statuses clients clients-test bench lint fmt template ci clean-local package lambda-test sam-build

help:
	@echo "make run          pulseboard serve --local (embedded DynamoDB Local + S3 under .pulseboard/)"
	@echo "make test         cargo test --workspace --all-targets against a throw-away local stack"
	@echo "make fuzz         schemathesis over every operation of docs/openapi.yaml against pulseboard serve"
	@echo "make statuses     every status docs/openapi.yaml documents was answered by the tests (after make test)"
	@echo "make clients      generate the Python and TypeScript SDKs (shared/clients) from docs/openapi.yaml"
	@echo "make clients-test lint the document, generate both SDKs, tsc --strict, run both journeys against pulseboard serve"
	@echo "make bench        pulseboard bench (release build) against a throw-away local stack"
	@echo "make package      cargo lambda build --release of every function (ARCH=x86_64|arm64), sizes printed"
	@echo "make lambda-test  each packaged bootstrap against a Lambda Runtime API, fed every saved event"
	@echo "make sam-build    sam build (cargo-lambda) of template.yaml for x86_64, offline"
	@echo "make deploy       check AWS credentials and region, sam build + sam deploy (ARCH=x86_64|arm64), print the outputs"
	@echo "make deploy-bootstrap COMPANY=... EMAIL=... [PASSWORD=...]  the first company and admin in the deployed stack"
	@echo "make lint         cargo fmt --check + clippy -D warnings"
	@echo "make fmt          cargo fmt --all"
	@echo "make template     cfn-lint + sam validate --lint on template.yaml"
	@echo "make ci           everything CI runs (.ci/run)"
	@echo "make tools        install/check the local tools and print their export lines"
	@echo "make clean-local  remove .pulseboard/ (local data of 'make run')"

tools:
	@scripts/tools.sh --ci-tools

run:
	@env="$$(scripts/tools.sh)"; eval "$$env"; \
	exec cargo run -p pulseboard-cli --bin pulseboard -- serve --local

# Each test process appends the statuses it answered per route to target/statuses/ (for
# `make statuses`). The tests serve the API on their own threads, in a debug build whose
# async frames are large: 4 MiB stacks leave room (the suite needs a little under 2).
test:
	@statuses="$${CARGO_TARGET_DIR:-$$(pwd -P)/target}/statuses"; rm -rf "$$statuses"; \
	set -x; PULSEBOARD_STATUS_LOG="$$statuses" RUST_MIN_STACK=4194304 \
	  scripts/local-stack.sh cargo test --workspace --all-targets $(TEST_ARGS)

# FUZZ_EXAMPLES (default 25 per operation) and FUZZ_SEED (default 1) tune it.
fuzz:
	scripts/fuzz.sh

# The typed clients (shared/clients, scripts/clients.sh): generated, not committed.
clients:
	scripts/clients.sh generate

clients-test:
	scripts/clients.sh check

# Compares the statuses `make test` recorded per operation with the ones docs/openapi.yaml
# documents (scripts/statuses.py); run `make test` first.
statuses:
	@env="$$(scripts/tools.sh --fuzz-tools)"; eval "$$env"; \
	"$$PULSEBOARD_FUZZ_VENV/bin/python" scripts/statuses.py

# The cold-start part spawns the klips function and hello-lambda, built here beside it.
bench:
	cargo build --release -p pulseboard-cli -p pulseboard-klips --bins
	STACK_PROFILE=release scripts/local-stack.sh cargo run --release -p pulseboard-cli --bin pulseboard -- bench $(BENCH_ARGS)

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

package:
	scripts/package.sh

# Needs `make package` first (CI runs both).
# The harness serves the API on its test thread too (a debug build): 4 MiB stacks, as for make test.
lambda-test:
	RUST_MIN_STACK=4194304 scripts/local-stack.sh cargo test -p pulseboard-tests --features lambda --test lambda

# What `sam build` does on a deploying machine, offline: cargo-lambda builds each function
# named in template.yaml (x86_64 here; the template's Architecture parameter says which).
# After `make package` it takes seconds: the same cargo lambda build is already fresh (CI
# runs both).
sam-build:
	@env="$$(scripts/tools.sh --ci-tools)"; eval "$$env"; \
	export PATH="$$PULSEBOARD_VENV/bin:$$PATH" AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0; \
	env -u CARGO_TARGET_DIR sam build --template-file template.yaml --parameter-overrides Architecture=x86_64 --build-dir .aws-sam/build

fmt:
	cargo fmt --all

# Both checks run offline and need no AWS credentials (plain `sam validate` does too).
template:
	@env="$$(scripts/tools.sh --ci-tools)"; eval "$$env"; \
	export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0; \
	set -x; \
	"$$PULSEBOARD_VENV/bin/cfn-lint" template.yaml; \
	"$$PULSEBOARD_VENV/bin/sam" validate --lint -t template.yaml

ci:
	.ci/run

clean-local:
	rm -rf .pulseboard

# Deploying to AWS (README, "Deploying to AWS"; docs/DEPLOY.md): scripts/deploy.sh checks the
# credentials and region (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; AWS_REGION),
# runs sam build and sam deploy with Architecture=$ARCH (default x86_64; arm64 needs the Rust
# target aarch64-unknown-linux-gnu) and prints the stack's outputs. STACK_NAME (default
# pulseboard), PARAMETER_OVERRIDES and GUIDED=1 (sam deploy --guided) pass through.
.PHONY: deploy deploy-bootstrap
deploy:
	scripts/deploy.sh

# COMPANY, EMAIL, PASSWORD (asked for when unset), PLAN, DAILY_LIMIT, PER_SECOND_LIMIT:
# `pulseboard bootstrap` against the deployed stack's table and bucket (no redeploy).
deploy-bootstrap:
	scripts/deploy.sh --bootstrap-only

# Vouch: `make demo` runs the main job end to end on swtpm; `make test` runs every test.
# Both install the Debian packages they need first (scripts/install-deps.sh, idempotent).

CARGO ?= cargo
export TSS2_LOG ?= all+none
# The real event logs the tests, the demo and the fuzz seeds read (../shared/testdata), also
# for a clone made elsewhere: see scripts/testdata-dir.sh and testsupport/testdata.rs.
export VOUCH_TESTDATA ?= $(shell ./scripts/testdata-dir.sh)

.PHONY: deps build demo test lint fmt fuzz-smoke audit supply-chain bench bench-10k deb cross clean

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace --bins

demo: build
	$(CARGO) run -q -p swtpm-tests --bin vouch-demo

test: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fuzz-smoke: deps
	./scripts/fuzz-smoke.sh

# RustSec audit against the offline advisory database (../shared/advisory-db; VOUCH_ADVISORY_DB
# overrides); ignored advisories, each with the reason it does not apply, are in .cargo/audit.toml.
audit: deps
	./scripts/supply-check.sh advisories

# The supply-chain gate CI runs: advisories (cargo-audit), licences, duplicate versions and
# sources (cargo-deny, deny.toml). Pinned tools are cached in /var/tmp/vouch-tools.
supply-chain: deps
	./scripts/supply-check.sh

# Throughput benchmarks (verification, XTS), then attestation latency and a 1,000-device load run
# (release builds; see swtpm-tests/BENCH.md and attest/BENCH.md).
bench: deps
	$(CARGO) bench -p vouch-attest --bench verify
	$(CARGO) bench -p vouch-agent --bench xts
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p swtpm-tests --bin vouch-bench-latency
	$(CARGO) run --release -p swtpm-tests --bin vouch-loadgen -- --devices 1000 --interval-secs 60 --duration-secs 120

# 10,000 simulated devices against one fleet (~5 min, ~1 GB RAM, 20,000 file descriptors).
bench-10k: deps
	$(CARGO) build --release --workspace --bins
	ulimit -n 20000 && $(CARGO) run --release -p swtpm-tests --bin vouch-loadgen -- --devices 10000 --interval-secs 60 --duration-secs 120

deb: deps
	./scripts/deb-build.sh

cross: deps
	./scripts/cross-build.sh

# The swtpm suite inside the test container, against the image's swtpm, tpm2-tools, tpm2-abrmd,
# mosquitto and qemu (podman only, no compose; see README "Developing in containers"). Images are
# built when missing and cached in /var/tmp/vouch-containers. ARGS selects tests, e.g.
# `make container-test ARGS='--test agent_tpm'`. container-selftest shows a failing test fails it.
.PHONY: container-test container-selftest container-dev container-dev-down
container-test:
	./scripts/container-test.sh $(ARGS)

container-selftest:
	./scripts/container-test-selftest.sh

# A long-lived swtpm (with EK certificates), broker and fleet in containers, for a host-built agent.
container-dev:
	./scripts/container-dev.sh up

container-dev-down:
	./scripts/container-dev.sh down

clean:
	$(CARGO) clean
	rm -rf .demo

# Vouch: `make demo` runs the main job end to end on swtpm; `make test` runs every test.
# Both install the Debian packages they need first (scripts/install-deps.sh, idempotent).

CARGO ?= cargo
export TSS2_LOG ?= all+none

.PHONY: deps build demo test lint fmt fuzz-smoke bench deb cross clean

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

bench: deps
	$(CARGO) bench --workspace

deb: deps
	./scripts/deb-build.sh

cross: deps
	./scripts/cross-build.sh

clean:
	$(CARGO) clean
	rm -rf .demo

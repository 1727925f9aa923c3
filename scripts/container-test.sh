#!/usr/bin/env bash
# Runs the swtpm suite (`cargo test -p swtpm-tests`) inside the test image, against the swtpm,
# tpm2-tools, tpm2-abrmd, mosquitto, qemu, ... of the image rather than the host's.
#
#   scripts/container-test.sh                        # the whole suite (make container-test)
#   scripts/container-test.sh --test agent_tpm       # any `cargo test` arguments select a subset
#   scripts/container-test.sh --test e2e -- quote    #   (they follow `-p swtpm-tests --no-fail-fast`)
#
# Needs on the host: podman (rootful; Debian 12's 4.3 is enough, no podman-compose), mmdebstrap
# and runc (all three installed if missing), and a rustup toolchain in ~/.rustup + ~/.cargo.
# Steps:
#  1. containers/build-base.sh: the images, each only if missing (cached, see that script).
#  2. On the host, scripts/vm-debian-image.sh makes sure the Debian server image of the VM tests
#     is in the cache (mmdebstrap runs as root on the host, not in an unprivileged container).
#     A build container (host network: crates.io and Debian's mirror): scripts/vm-prep.sh fills
#     the VM tests' cache; cargo builds the workspace binaries and the suite's test binaries.
#  3. A test container (host network, as `make test` has; the tests bind free loopback ports):
#     `cargo test -p swtpm-tests --no-fail-fast ARGS`. Every failure is reported and
#     this script exits with cargo's status. It runs --privileged: the boot_id tests
#     `unshare -m` and mount a procfs, which a default container may not.
#
# Rust: Debian 12's rustc is too old and rustup cannot download here, so the host's rustup home
# (read-only) and cargo home are mounted at their own paths, and so are the repository, its
# target directory and the test data: cargo inside sees the same paths as `make test` on the host
# and rebuilds nothing that build already made. CARGO_TARGET_DIR selects another target
# directory (e.g. $VOUCH_CONTAINER_CACHE/target for a build of the container's own).
# Test data: scripts/testdata-dir.sh, as for `make test` (VOUCH_TESTDATA overrides).
# The host's CA certificates (/etc/ssl/certs) are mounted, so downloads at test time (cargo
# install of a tool) trust what the host trusts.
# Every VOUCH_* variable of the caller is passed into both containers (e.g. VOUCH_SKIP_VM=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. containers/lib.sh

image=$(containers/build-base.sh | tail -n1)

cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
if [ ! -x "$cargo_home/bin/cargo" ] || [ ! -d "$rustup_home/toolchains" ]; then
  echo "container-test: no rustup toolchain in $rustup_home and $cargo_home (install Rust with rustup)" >&2
  exit 2
fi
target=${CARGO_TARGET_DIR:-$root/target}
testdata=${VOUCH_TESTDATA:-$(scripts/testdata-dir.sh)}
vm_cache=${VOUCH_VM_CACHE:-/var/tmp/vouch-vm}
tools_cache=${VOUCH_TOOLS_CACHE:-/var/tmp/vouch-tools}   # pinned cargo tools (scripts/supply-tool.sh)
mkdir -p "$target" "$vm_cache" "$tools_cache"

args=(run --rm --init "${LIMITS[@]}" -w "$root"
  -v "$root:$root" -v "$target:$target"
  -v "$cargo_home:$cargo_home" -v "$rustup_home:$rustup_home:ro"
  -v "$vm_cache:$vm_cache" -v "$tools_cache:$tools_cache" -v /etc/ssl/certs:/etc/ssl/certs:ro
  -e "VOUCH_TOOLS_CACHE=$tools_cache"
  -e "HOME=$HOME" -e "CARGO_HOME=$cargo_home" -e "RUSTUP_HOME=$rustup_home"
  -e "PATH=$cargo_home/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  -e "CARGO_TARGET_DIR=$target" -e "VOUCH_VM_CACHE=$vm_cache"
  -e "TSS2_LOG=${TSS2_LOG:-all+none}" -e "CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-}"
  -e "CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}")
if [ -n "$testdata" ]; then
  args+=(-v "$testdata:$testdata:ro" -e "VOUCH_TESTDATA=$testdata")
else
  echo "container-test: no shared/testdata found (see scripts/testdata-dir.sh); tests that read it will fail" >&2
fi
while IFS='=' read -r name _; do
  case $name in VOUCH_TESTDATA | VOUCH_VM_CACHE | VOUCH_TOOLS_CACHE | VOUCH_CONTAINER_CACHE) ;; VOUCH_*) args+=(-e "$name") ;; esac
done < <(env)

if [ -z "${VOUCH_SKIP_VM:-}" ]; then
  VOUCH_VM_CACHE=$vm_cache scripts/vm-prep.sh >/dev/null
  VOUCH_VM_CACHE=$vm_cache scripts/vm-debian-image.sh >/dev/null
fi

echo "container-test: building in $image" >&2
pm "${args[@]}" --network=host "$image" bash -ec '
  if [ -z "${VOUCH_SKIP_VM:-}" ]; then scripts/vm-prep.sh >/dev/null; fi
  # The packaging test (ops_deb) runs cargo-deb, which scripts/deb-build.sh installs if missing.
  if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked --version "$(sed -n "s/^CARGO_DEB_VERSION=//p" scripts/deb-build.sh)" cargo-deb
  fi
  cargo build --workspace --bins
  cargo test -p swtpm-tests --no-run'

echo "container-test: cargo test -p swtpm-tests --no-fail-fast $* (in $image)" >&2
status=0
pm "${args[@]}" --network=host --privileged "$image" \
  cargo test -p swtpm-tests --no-fail-fast "$@" || status=$?
echo "container-test: exit status $status" >&2
exit "$status"

#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target of attest/fuzz (and agent/fuzz, fleet/fuzz when
# present), seeds corpora from the real test data, runs each target for a bounded time and exits
# non-zero on the first crash. Works with stable Rust: cargo-fuzz needs nightly flags (-Zsanitizer), which
# RUSTC_BOOTSTRAP=1 enables on a stable toolchain.
#
# Environment: FUZZ_SECONDS (per target, default 20), FUZZ_TOOLCHAIN (default: the active one),
# CARGO_TARGET_DIR (optional; the fuzz build goes to <dir>/fuzz).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
# FUZZ_TOOLCHAIN=nightly (say) picks a rustup toolchain; by default the active one is used.
tc=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then tc=("+$FUZZ_TOOLCHAIN"); fi
export RUSTC_BOOTSTRAP=1
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

# shared/testdata beside the repository, or beside one of its parents (git worktrees).
data=${VOUCH_TESTDATA:-}
dir=$root
while [ -z "$data" ] && [ "$dir" != / ]; do
    if [ -d "$dir/../shared/testdata" ]; then data=$(cd "$dir/../shared/testdata" && pwd); break; fi
    dir=$(dirname "$dir")
done

# seed DIR TARGET FILES...: copies FILES into DIR/corpus/TARGET (existing corpus kept).
seed() {
    local fuzz_dir=$1 target=$2
    shift 2
    mkdir -p "$fuzz_dir/corpus/$target"
    local f
    for f in "$@"; do
        [ -f "$f" ] && cp "$f" "$fuzz_dir/corpus/$target/$(basename "$(dirname "$f")")_$(basename "$f")"
    done
    return 0
}

seed_attest() {
    local fz=$root/attest/fuzz
    if [ -n "$data" ]; then
        local logs=("$data"/eventlogs/*.bin "$data"/eventlogs/edge/*.bin "$data"/eventlogs/unlabeled/*.bin)
        seed "$fz" eventlog "${logs[@]}"
        seed "$fz" ima_log "$data"/ima/*
        seed "$fz" runtime_policy "$data"/ima/*.json
    else
        echo "fuzz-smoke: shared/testdata not found; running without seed corpora" >&2
    fi
    seed "$fz" policy "$root"/tpm-policies/*.toml
    seed "$fz" release "$root"/tpm-policies/releases/*.toml
    # Real EFI images where Debian's signed shim and GRUB are installed (install-deps.sh).
    seed "$fz" authenticode /usr/lib/shim/shimx64.efi.signed /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
    # A few well-formed MQTT messages, so the protocol target starts inside the JSON shapes.
    local p=$fz/corpus/protocol
    mkdir -p "$p"
    printf '%s' '{"nonce":"AAECAw==","pcrs":"sha256:0,1,7"}' >"$p/seed_challenge.json"
    printf '%s' '{"boot_id":"0b6c1f9e"}' >"$p/seed_boot.json"
    printf '%s' '{"volume_uuid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","boot_id":"0b6c1f9e","credential_blob":"AAEC","encrypted_secret":"AwQ=","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAECAwQFBgcICQoLDA0ODw=="}' >"$p/seed_release.json"
    printf '%s' '{"volume_uuid":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","ok":true,"detail":"sealed"}' >"$p/seed_result.json"
    printf '%s' '{"step":"request","request_id":"r1","ek_public":"AAE=","ek_certificates":["MA=="],"ak_public":"AAE=","tls_public":"AAE="}' >"$p/seed_enroll.json"
    # The backup target also parses share files: one well-formed share.
    local b=$fz/corpus/backup
    mkdir -p "$b"
    printf 'vouch-backup-share-v1\nkey %064d\nthreshold 2\nshare 01%064d\n' 0 0 >"$b/seed_share.txt"
}

# run FUZZ_DIR: builds and runs every target listed by `cargo fuzz list`.
run() {
    local fuzz_dir=$1
    local pkg_dir
    pkg_dir=$(dirname "$fuzz_dir")
    echo "fuzz-smoke: building $fuzz_dir" >&2
    (cd "$pkg_dir" && cargo "${tc[@]}" fuzz build -O --fuzz-dir "$fuzz_dir")
    local target
    for target in $(cd "$pkg_dir" && cargo "${tc[@]}" fuzz list --fuzz-dir "$fuzz_dir"); do
        mkdir -p "$fuzz_dir/corpus/$target"
        echo "fuzz-smoke: $target for ${seconds}s" >&2
        (cd "$pkg_dir" && cargo "${tc[@]}" fuzz run -O --fuzz-dir "$fuzz_dir" "$target" \
            "$fuzz_dir/corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
            -print_final_stats=1) || {
            echo "fuzz-smoke: $target FAILED (artifacts in $fuzz_dir/artifacts/$target)" >&2
            exit 1
        }
    done
}

seed_attest
run "$root/attest/fuzz"
if [ -d "$root/agent/fuzz" ]; then
    # A token systemd-cryptenroll 252 wrote (swtpm, --tpm2-pcrs=7).
    mkdir -p "$root/agent/fuzz/corpus/systemd_token"
    printf '%s' '{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AJ4AIIgTN6FkyoYqleiCH3vP09YAruD2Wv4VIkfvrfpIrRY2ABAVhycXuw7Vs6gPGD+xRWWn/3XtHfZhuRQBVOMgzIjjJa0qZHTxADFxCwL7YLOCXgOMbZIWKvPH3TV2lNkT3IsJMP9RCP6XqvGfRO6RuKkl1B4dnKOt8bbKLXfaSIwXG9w2vOJjEihPS9ZXlKl83X8FJgfzidJLSyznRwBOAAgACwAAABIAIItWgtgbKUNdCNeSeBUGEdx+WSOy/vzOaEoJV3tAEwqLABAAIL4SuDuOwo0qxzLkXhBdUgrWhBB5S3gGUnrkL4btY1hI","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b","tpm2-pin":false}' \
        >"$root/agent/fuzz/corpus/systemd_token/seed_systemd252.json"
    run "$root/agent/fuzz"
fi
# The fleet's HTTP API router on a real (empty) fleet directory (needs mosquitto's
# dynamic-security plugin for `init`, as the fleet tests do).
if [ -d "$root/fleet/fuzz" ]; then
    mkdir -p "$root/fleet/fuzz/corpus/http_api"
    printf '\000\000api/v1/devices/%064d?limit=5' 0 >"$root/fleet/fuzz/corpus/http_api/seed_device"
    printf '\002\000api/v1/devices/%064d/policy\000{"policy":"p"}' 0 >"$root/fleet/fuzz/corpus/http_api/seed_policy"
    # A small package built by dpkg-deb (gzip, so inputs stay small), for the deb target.
    d=$(mktemp -d)
    mkdir -p "$d/pkg/DEBIAN" "$d/pkg/boot" "$root/fleet/fuzz/corpus/deb"
    printf 'Package: seed\nVersion: 1\nArchitecture: all\nMaintainer: s <s@example.org>\nDescription: s\n' >"$d/pkg/DEBIAN/control"
    printf 'MZ' >"$d/pkg/boot/vmlinuz-seed"
    dpkg-deb --root-owner-group -Zgzip --build "$d/pkg" "$root/fleet/fuzz/corpus/deb/seed.deb" >/dev/null || true
    rm -rf "$d"
    # runtime-policy create --initrd: a small Debian-shaped image (uncompressed early cpio, then a
    # zstd one) and a gzip one, when the tools are there.
    initrd_corpus=$root/fleet/fuzz/corpus/initramfs
    mkdir -p "$initrd_corpus"
    if command -v cpio >/dev/null && command -v zstd >/dev/null; then
        seed_tmp=$(mktemp -d)
        mkdir -p "$seed_tmp/t/usr/bin" && printf '#!/bin/sh\n' >"$seed_tmp/t/init"
        printf 'x' >"$seed_tmp/t/usr/bin/sh" && ln -s usr/bin "$seed_tmp/t/bin"
        (cd "$seed_tmp/t" && find . | cpio --quiet -o -H newc >"$seed_tmp/early.cpio")
        (cd "$seed_tmp/t" && find . | cpio --quiet -o -H newc | zstd -q >"$seed_tmp/main.zst")
        (cd "$seed_tmp/t" && find . | cpio --quiet -o -H newc | gzip -n >"$initrd_corpus/seed_gzip")
        cat "$seed_tmp/early.cpio" "$seed_tmp/main.zst" >"$initrd_corpus/seed_early_zstd"
        rm -rf "$seed_tmp"
    fi
    run "$root/fleet/fuzz"
fi
echo "fuzz-smoke: all targets ran without a crash" >&2

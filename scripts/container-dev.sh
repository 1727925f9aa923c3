#!/usr/bin/env bash
# A long-lived development stack in containers, for an agent built on the host:
#   vouch-dev-swtpm   swtpm with EK certificates (RSA-2048 and ECC P-384, from a local CA) and a
#                     platform certificate, made by swtpm_setup as the test harness makes them
#                     (swtpm-tests/src/template.rs), on 127.0.0.1:2321 (control 2322)
#   vouch-dev-broker  mosquitto on the fleet directory's configuration (127.0.0.1:8883, 8884)
#   vouch-dev-fleet   `vouch-fleet serve` on that fleet directory
# All three use the host's network namespace, listening on 127.0.0.1 only (plain `podman run`;
# neither podman-compose nor `podman compose` is needed).
#
#   scripts/container-dev.sh up       # images and vouch-fleet built if missing, then start
#   scripts/container-dev.sh status   # the containers, and the files below
#   scripts/container-dev.sh logs     # the last lines each container logged
#   scripts/container-dev.sh down     # stop and remove the containers (the state stays)
#   scripts/container-dev.sh reset    # down, then remove the state too
#
# State: $VOUCH_DEV_DIR (default $VOUCH_CONTAINER_CACHE/dev, i.e. /var/tmp/vouch-containers/dev):
#   swtpm/state, swtpm/ca (the EK CA: swtpm-localca-rootca-cert.pem, issuercert.pem)
#   fleet/      (`vouch-fleet init`: fleet.toml, ca.crt, claim.crt, claim.key, mosquitto.conf;
#               trust-roots/swtpm-localca*.pem: the swtpm's EK CAs)
#   agent.toml  (for a host agent: this swtpm, this broker, state in agent-state/)
# Then, on the host:
#   cargo build -p vouch-agent
#   target/debug/vouch-agent --tcti swtpm:host=127.0.0.1,port=2321 tpm info
#   target/debug/vouch-agent run --allow-root --config /var/tmp/vouch-containers/dev/agent.toml
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. containers/lib.sh
dev=${VOUCH_DEV_DIR:-$CACHE/dev}
names=(vouch-dev-fleet vouch-dev-broker vouch-dev-swtpm)

down() { pm rm -f -t 5 "${names[@]}" >/dev/null 2>&1 || true; }

up() {
  local image target cargo_home rustup_home
  image=$(containers/build-base.sh | tail -n1)
  target=${CARGO_TARGET_DIR:-$root/target}
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  down
  mkdir -p "$dev/swtpm/state" "$dev/swtpm/ca" "$dev/agent-state" "$target"
  local vol=(-v "$dev:$dev")

  echo "container-dev: building vouch-fleet in $image" >&2
  pm run --rm "${LIMITS[@]}" --network=host -w "$root" -v "$root:$root" -v "$target:$target" \
    -v "$cargo_home:$cargo_home" -v "$rustup_home:$rustup_home:ro" \
    -e "HOME=$HOME" -e "CARGO_HOME=$cargo_home" -e "RUSTUP_HOME=$rustup_home" \
    -e "PATH=$cargo_home/bin:/usr/sbin:/usr/bin:/sbin:/bin" -e "CARGO_TARGET_DIR=$target" \
    "$image" cargo build -p vouch-fleet
  # The fleet's binary is copied into the state, so later host builds do not change what runs.
  cp "$target/debug/vouch-fleet" "$dev/vouch-fleet"

  # swtpm_setup with the harness's configuration (template.rs: write_configs and make).
  cat >"$dev/swtpm/swtpm-localca.conf" <<EOF
statedir = $dev/swtpm/ca
signingkey = $dev/swtpm/ca/signkey.pem
issuercert = $dev/swtpm/ca/issuercert.pem
certserial = $dev/swtpm/ca/certserial
EOF
  printf '%s\n' "--platform-manufacturer Vouch" "--platform-version 2.1" "--platform-model swtpm" \
    >"$dev/swtpm/swtpm-localca.options"
  cat >"$dev/swtpm/swtpm_setup.conf" <<EOF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dev/swtpm/swtpm-localca.conf
create_certs_tool_options = $dev/swtpm/swtpm-localca.options
active_pcr_banks = sha1,sha256
EOF
  pm run -d --name vouch-dev-swtpm "${LIMITS[@]}" --network=host "${vol[@]}" "$image" sh -ec "
    [ -e $dev/swtpm/state/tpm2-00.permall ] ||
      swtpm_setup --tpm2 --create-ek-cert --create-platform-cert --pcr-banks sha1,sha256 \
        --tpmstate $dev/swtpm/state --config $dev/swtpm/swtpm_setup.conf
    exec swtpm socket --tpm2 --tpmstate dir=$dev/swtpm/state \
      --server type=tcp,port=2321,bindaddr=127.0.0.1 --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear" >/dev/null
  wait_port 2321 swtpm

  if [ ! -e "$dev/fleet/fleet.toml" ]; then
    pm run --rm "${LIMITS[@]}" --network=host "${vol[@]}" "$image" \
      "$dev/vouch-fleet" init --dir "$dev/fleet" >&2
  fi
  # The fleet trusts the swtpm's EK CA, as the harness's stacks do.
  cp "$dev/swtpm/ca/swtpm-localca-rootca-cert.pem" "$dev/fleet/trust-roots/swtpm-localca-root.pem"
  cp "$dev/swtpm/ca/issuercert.pem" "$dev/fleet/trust-roots/swtpm-localca.pem"
  rm -f "$dev/fleet/mosquitto.pid"
  pm run -d --name vouch-dev-broker "${LIMITS[@]}" --network=host "${vol[@]}" "$image" \
    mosquitto -c "$dev/fleet/mosquitto.conf" >/dev/null
  wait_port 8883 broker
  pm run -d --name vouch-dev-fleet --init "${LIMITS[@]}" --network=host "${vol[@]}" "$image" \
    "$dev/vouch-fleet" serve --allow-root --config "$dev/fleet/fleet.toml" >/dev/null

  cat >"$dev/agent.toml" <<EOF
tcti = "swtpm:host=127.0.0.1,port=2321"
state_dir = "$dev/agent-state"
# swtpm has no measured boot: this recorded log will not replay to the swtpm's PCRs.
eventlog = "$dev/eventlog.bin"

[broker]
host = "localhost"
port = 8883
enroll_port = 8884
ca_file = "$dev/fleet/ca.crt"
claim_cert = "$dev/fleet/claim.crt"
claim_key = "$dev/fleet/claim.key"
keep_alive_secs = 30
max_backoff_secs = 5
EOF
  [ -e "$dev/eventlog.bin" ] || : >"$dev/eventlog.bin"
  status
}

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "container-dev: the $2 does not listen on 127.0.0.1:$1; its log:" >&2
  pm logs "vouch-dev-$2" >&2 || true
  exit 1
}

status() {
  pm ps -a --filter name=vouch-dev- --format '{{.Names}}  {{.Status}}'
  echo "state: $dev"
  echo "agent: target/debug/vouch-agent run --allow-root --config $dev/agent.toml"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  reset) down; rm -rf "$dev" ;;
  status) status ;;
  logs) for n in "${names[@]}"; do echo "== $n"; pm logs --tail 20 "$n" 2>&1 || true; done ;;
  *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac

# Sourced by containers/*.sh and scripts/container-*.sh: how podman is called here.
#
# On this kind of machine (cgroup v1/v2 hybrid, open-files hard limit 20000) crun, Debian 12's
# default runtime, refuses to start containers ("cgroups in hybrid mode not supported",
# "setrlimit RLIMIT_NOFILE"): use runc and limits the host allows. PODMAN_FLAGS overrides the
# global flags (default: --runtime runc).
read -r -a PODMAN_GLOBAL <<<"${PODMAN_FLAGS:---runtime runc}"
LIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
CACHE="${VOUCH_CONTAINER_CACHE:-/var/tmp/vouch-containers}"
pm() { podman "${PODMAN_GLOBAL[@]}" "$@"; }

#!/bin/sh
# /init of the Vouch test initramfs (PID 1): mounts, modules, network, then vouch-agent.
# The host shares a directory over virtio-9p (tag "vouch"): agent.toml, the fleet's CA and claim
# credentials, the agent's state directory; the guest copies its firmware event log there and
# powers off (cleanly: the kernel sends TPM2_Shutdown) when the host creates `poweroff` in it.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "vouch-init: kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
while read -r m; do
  insmod "/lib/modules/$m.ko" || echo "vouch-init: insmod $m failed"
done </etc/vouch-modules
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 ||
  echo "vouch-init: network setup failed"
mkdir -p /mnt/share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vouch /mnt/share ||
  echo "vouch-init: mounting the 9p share failed"
ls -l /dev/tpm* 2>&1
LOG=/sys/kernel/security/tpm0/binary_bios_measurements
if cp "$LOG" /mnt/share/eventlog.tmp && mv /mnt/share/eventlog.tmp /mnt/share/eventlog.bin; then
  echo "vouch-init: event log $(wc -c <"$LOG") bytes copied to the share"
else
  echo "vouch-init: no firmware event log at $LOG"
fi
if [ -e /mnt/share/job.sh ]; then
  # A test's job instead of the agent (the initramfs stays the same; the job is in the share).
  echo "vouch-init: running job.sh"
  TSS2_LOG=all+none sh /mnt/share/job.sh >/mnt/share/job.out 2>&1
  echo "$?" >/mnt/share/job.rc
  echo "vouch-init: job.sh exited with status $(cat /mnt/share/job.rc)"
  sync
  poweroff -f
fi
echo "vouch-init: starting vouch-agent"
TSS2_LOG=all+none VOUCH_LOG=info vouch-agent run --allow-root --log-format text \
  --config /mnt/share/agent.toml &
agent=$!
while [ ! -e /mnt/share/poweroff ]; do
  if ! kill -0 "$agent" 2>/dev/null; then
    wait "$agent"
    echo "vouch-init: vouch-agent exited with status $?"
    break
  fi
  sleep 1
done
kill "$agent" 2>/dev/null
wait "$agent" 2>/dev/null
sync
echo "vouch-init: powering off"
poweroff -f

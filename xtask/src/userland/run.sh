#!/bin/sh
# The guest side of `cargo xtask userland` (docs/userland.md), run by lazyvma-userland.service
# after multi-user.target from the exchange disk's tar (/run/lazyvma): state A, the trace,
# the services started together, state B; the results go back onto the exchange disk.
set -u
X=/run/lazyvma R=/run/lazyvma/results
mkdir -p "$R"
. "$X/config" # UNITS, SETTLE, TRACE_ARGS
# initramfs-tools mounts /run noexec: the binaries go onto the (snapshot) root disk.
install -m 0755 "$X/lazyvma" "$X/lazyvma-workload" /usr/local/sbin/
say() { echo "lazyvma-userland: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
stamp() { echo "$1 $(up)" >>"$R/times.txt"; }
# Jobs other than this unit's own: boot (or the start) is done when there are none.
pending() { systemctl list-jobs --no-legend 2>/dev/null | grep -v 'lazyvma-userland\.service' | grep -c .; }
settle() { while [ "$(pending)" -gt 0 ]; do sleep 1; done; sleep "$SETTLE"; }
echo "lazyvma-vm: uname -r: $(uname -r)"
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
stamp unit_started
# `systemctl disable rsyslog` (rootfs.sh) also removed its syslog.service alias, without
# which syslog.socket refuses to start it: the alias an enabled rsyslog would have.
ln -sf /lib/systemd/system/rsyslog.service /etc/systemd/system/syslog.service
systemctl daemon-reload
settle
stamp booted

# (1) state A
cat /proc/slabinfo >"$R/slabinfo-A.txt"
lazyvma snapshot -j --by-cgroup --cgroup-cap 64 >"$R/snapshot-A.json" 2>"$R/snapshot-A.err"
echo $? >"$R/snapshot-A.rc"
stamp snapshot_a

# (2) the trace, live (its first live row printed) before anything starts
# shellcheck disable=SC2086
lazyvma trace -p 1 -j --by-cgroup --cgroup-cap 64 --report "$R/trace-report.json" $TRACE_ARGS \
  >"$R/trace.json" 2>"$R/trace.err" &
tp=$!
# Waiting quietly: this shell is in the trace's scope, and a fork of it while lazyvma
# seeds races the snapshot (it and what it starts later would not be seeded); one tail
# and one grep, blocked in reads, are seeded. tail ends with the trace if it fails.
tail -n +1 -f --pid=$tp "$R/trace.err" 2>/dev/null | grep -q 'AV alloc'
stamp trace_live
say "trace live; starting: $UNITS"

# (3) the services, together
# shellcheck disable=SC2086
systemctl start --no-block $UNITS
settle
stamp started
for u in $UNITS; do
  echo "$u $(systemctl is-active "$u") $(systemctl show -p MainPID --value "$u")" >>"$R/services.txt"
done

# (4) the trace ends; state B
kill -TERM $tp # ends the trace through its report, as SIGINT would
wait $tp
echo $? >"$R/trace.rc"
stamp trace_ended
cat /proc/slabinfo >"$R/slabinfo-B.txt"
lazyvma snapshot -j --by-cgroup --cgroup-cap 64 >"$R/snapshot-B.json" 2>"$R/snapshot-B.err"
echo $? >"$R/snapshot-B.rc"
stamp snapshot_b
# The series' world beside this one: Android's fork server in miniature, traced as a command
# (after B, so it is in neither state).
lazyvma trace -j --report "$R/zygote-report.json" -- lazyvma-workload zygote -n "$ZYGOTE_N" --apps "$ZYGOTE_APPS" \
  >"$R/zygote.out" 2>"$R/zygote.err" </dev/null
echo $? >"$R/zygote.rc"
stamp zygote
systemctl --failed --no-legend >"$R/failed.txt" 2>&1
journalctl -b --no-pager -q -p warning >"$R/journal-warnings.txt" 2>&1

# The results replace the input on the exchange disk; the host reads the tar back.
tar -cf /dev/vdb -C "$R" . && sync
echo "lazyvma-vm: exit status: $?"
systemctl poweroff -ff

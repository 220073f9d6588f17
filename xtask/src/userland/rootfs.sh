#!/bin/sh
# The userland's rootfs: Debian bookworm, systemd, and the services installed but not
# enabled (the run starts them itself). Run as root on the host by `cargo xtask userland`;
# this file's text is part of the cache key, so any edit rebuilds the rootfs.
# Usage: rootfs.sh DEBARCH ARCHIVE_URI SECURITY_URI DEST PACKAGES UNITS
set -eu
arch=$1 archive=$2 security=$3 dest=$4 packages=$5 units=$6

# minbase + what a booted systemd system needs; the rest is the services' own dependencies.
debootstrap --arch="$arch" --variant=minbase \
  --include=systemd-sysv,udev,dbus,kmod,initramfs-tools,iproute2,procps,zstd \
  bookworm "$dest" "$archive"

cat >"$dest/etc/apt/sources.list" <<SRC
deb $archive bookworm main
deb $archive bookworm-updates main
deb $security bookworm-security main
SRC
# Nothing starts inside the chroot; the postinsts still create their databases and users.
printf '#!/bin/sh\nexit 101\n' >"$dest/usr/sbin/policy-rc.d"
chmod 755 "$dest/usr/sbin/policy-rc.d"

# The chroot's mounts live and die with this mount namespace: none is left on the host.
unshare --mount --propagation private sh -eu -c '
  dest=$1 packages=$2 units=$3
  mount -t proc proc "$dest/proc"
  mount -t sysfs sysfs "$dest/sys"
  mount --bind /dev "$dest/dev"
  mount -t devpts devpts "$dest/dev/pts"
  mount -t tmpfs tmpfs "$dest/run"
  chroot "$dest" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -eu -c "
    apt-get -q update
    apt-get -q -y upgrade
    apt-get -q -y install --no-install-recommends $packages
    systemctl disable $units
    # Timers that would fire during a run and are not what is measured.
    systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
    apt-get clean
  "
' sh "$dest" "$packages" "$units"

rm -f "$dest/usr/sbin/policy-rc.d"

# apache2 and lighttpd move off nginx's port 80.
sed -i 's/^Listen 80$/Listen 8080/' "$dest/etc/apache2/ports.conf"
sed -i 's/<VirtualHost \*:80>/<VirtualHost *:8080>/' "$dest/etc/apache2/sites-available/000-default.conf"
sed -i 's/^server.port *=.*/server.port = 8081/' "$dest/etc/lighttpd/lighttpd.conf"

echo lazyvma-userland >"$dest/etc/hostname"
printf '127.0.0.1 localhost\n10.0.2.15 lazyvma-userland.localdomain lazyvma-userland\n' >"$dest/etc/hosts"
printf '/dev/vda / ext4 defaults 0 1\n' >"$dest/etc/fstab"
# A fixed address on the one NIC (QEMU's user network), so the daemons that bind to an
# interface (nmbd, avahi, exim4, bind9) find one.
mkdir -p "$dest/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\n' >"$dest/etc/systemd/network/10-lazyvma.network"
chroot "$dest" systemctl enable systemd-networkd.service
# TCG is slow and everything starts at once: no service may time out for that.
mkdir -p "$dest/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultTimeoutStartSec=900s\n' >"$dest/etc/systemd/system.conf.d/lazyvma.conf"
# Root logs in on the console without a password (a throwaway guest, no network).
chroot "$dest" passwd -d root

# The run itself comes from the exchange disk (/dev/vdb, a tar), so changing it never
# rebuilds this rootfs; the results go back onto the same disk.
cat >"$dest/etc/systemd/system/lazyvma-userland.service" <<'UNIT'
[Unit]
Description=lazyvma userland run (from the exchange disk)
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh -c 'mkdir -p /run/lazyvma && tar -xf /dev/vdb -C /run/lazyvma && exec /bin/sh /run/lazyvma/run.sh'
[Install]
WantedBy=multi-user.target
UNIT
chroot "$dest" systemctl enable lazyvma-userland.service

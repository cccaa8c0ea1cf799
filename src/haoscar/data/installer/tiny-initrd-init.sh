#!/bin/sh
# /init of the tiny test image's initramfs: load the disk and NIC drivers, find root= (UUID=, LABEL= or a device),
# mount it and hand over to its /sbin/init.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
while read -r module; do
    insmod "$module" 2>/dev/null
done </etc/haoscar-modules
root=
for word in $(cat /proc/cmdline); do
    case "$word" in root=*) root=${word#root=} ;; esac
done
device=
tries=0
while [ -z "$device" ] && [ $tries -lt 100 ]; do
    case "$root" in
        UUID=* | LABEL=*) device=$(findfs "$root" 2>/dev/null) ;;
        *) [ -b "$root" ] && device=$root ;;
    esac
    [ -z "$device" ] && sleep 0.1
    tries=$((tries + 1))
done
mkdir -p /newroot
if [ -z "$device" ] || ! mount -t ext4 "$device" /newroot; then
    echo "tiny initrd: cannot mount root $root"
    while :; do sleep 3600; done
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init

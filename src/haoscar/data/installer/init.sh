#!/bin/sh
# /init of the haoscar installer initramfs: mount the kernel's file systems, load the drivers, run the installer.
# PID 1 must never exit (the kernel would panic), so it waits forever once the installer is done or has failed:
# the head node already knows the outcome and the post-install action has run.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
exec </dev/console >/dev/console 2>&1
echo "haoscar installer: loading drivers"
while read -r module; do
    insmod "$module" 2>/dev/null
done </etc/haoscar-modules
# The last console= of the kernel command line is /dev/console; show the installer on every active console
# (the screen and the serial line), so that a serial log or an IPMI session sees what happened.
consoles=$(cat /sys/class/tty/console/active 2>/dev/null)
/bin/sh /usr/lib/haoscar/install.sh 2>&1 | while IFS= read -r line; do
    for tty in ${consoles:-console}; do echo "$line" >"/dev/$tty"; done
done
echo "haoscar installer: finished; the head node has the outcome"
while :; do sleep 3600; done

#!/bin/sh
# /sbin/init of the tiny test image: take the identity the haoscar installer wrote (/etc/haoscar/node.conf),
# bring up the interface, and serve a marker page naming the host over HTTP (port 80).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -o remount,rw / 2>/dev/null
. /etc/haoscar/node.conf
hostname "$(cat /etc/hostname)"
ip link set lo up
ip link set "$IFNAME" up
if [ "$IP_ASSIGNMENT" = static ]; then
    ip addr add "$IP/$PREFIX" dev "$IFNAME"
    [ -n "$GATEWAY" ] && ip route add default via "$GATEWAY"
else
    udhcpc -i "$IFNAME" -b -s /etc/udhcpc.script
fi
mkdir -p /srv/www
echo "haoscar-tiny host=$(hostname) ip=$IP" >/srv/www/index.html
httpd -p 80 -h /srv/www
echo "tiny image: $(hostname) up on $IFNAME $IP"
while :; do sleep 3600; done

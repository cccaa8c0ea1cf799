#!/bin/sh
# Written by the haoscar installer on UEFI nodes, as /etc/kernel/postinst.d/zz-haoscar-esp and
# /etc/initramfs/post-update.d/zz-haoscar-esp: syslinux.efi reads the kernel and initrd from the EFI system
# partition, so after a kernel or initramfs update the newest of /boot is copied there (mounted at /boot/efi).
# HAOSCAR_ROOT prefixes every path (tests).
set -e
root=${HAOSCAR_ROOT:-}
esp=$root/boot/efi/EFI/BOOT
[ -f "$esp/syslinux.cfg" ] || { echo "zz-haoscar-esp: $esp/syslinux.cfg missing; is the ESP mounted?" >&2; exit 0; }
kernel=$(ls "$root"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || exit 0
cp "$kernel" "$esp/vmlinuz.new"
mv "$esp/vmlinuz.new" "$esp/vmlinuz"
initrd=$root/boot/initrd.img-${kernel##*/vmlinuz-}
if [ -f "$initrd" ]; then
    cp "$initrd" "$esp/initrd.img.new"
    mv "$esp/initrd.img.new" "$esp/initrd.img"
    grep -q 'INITRD' "$esp/syslinux.cfg" || sed -i 's/^\( *\)LINUX .*/&\n\1INITRD initrd.img/' "$esp/syslinux.cfg"
fi
sync
echo "zz-haoscar-esp: ${kernel##*/} copied to the EFI system partition"

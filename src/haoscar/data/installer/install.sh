#!/bin/sh
# haoscar's network installer (POSIX sh on busybox), SystemImager's flow modernised:
#   DHCP -> node plan from the head's boot server (by MAC) -> check the disk against the image -> partition ->
#   mkfs -> image as a tar stream over HTTP -> per-node files -> bootloader -> tell the head -> post-install action.
# Every stage is reported to the head (POST /install/MAC/progress); a failure is reported with its stage and reason
# (POST /install/MAC/failed) before anything else happens.
#
# Inputs: the kernel command line (haoscar.server=URL, haoscar.token=TOKEN, optional haoscar.disk=DEV), or for
# running it outside the initramfs: HAOSCAR_SERVER, HAOSCAR_TOKEN, HAOSCAR_MAC (skips DHCP), HAOSCAR_DISK (a block
# device or a file), HAOSCAR_TARGET (mount point), HAOSCAR_NO_POWER=1 (print the post-install action instead).
# The token is this node's install credential (the boot server put it in the node's iPXE script): every request
# to the boot server carries it, and without it the server answers 403.
# Firmware: a machine booted through UEFI (/sys/firmware/efi) gets a GPT disk with an EFI system partition and
# syslinux.efi as its removable-media boot loader; others an MBR disk with extlinux. haoscar.firmware=efi|bios
# (or HAOSCAR_FIRMWARE) overrides the detection.
set -u

TARGET=${HAOSCAR_TARGET:-/mnt/target}
STAGE=start
WATCHER=
MOUNTED=
SERVER=
TOKEN=
MAC=
DISK=
ESP=
ESP_MIB=100
FIRMWARE=bios
# Scratch files (tool logs, the image fifo): a private directory made by main, so that installs run side by side
# outside the initramfs (the lab's namespace hosts share the machine's /tmp) never read each other's. Empty until
# made; never the shared /tmp itself (if it cannot be made, the install fails and says so).
W=

log() { echo "haoscar-install: $*"; }

arg() {
    for word in $(cat "${HAOSCAR_CMDLINE:-/proc/cmdline}"); do
        case "$word" in "$1"=*) echo "${word#*=}"; return 0 ;; esac
    done
    return 1
}

urlenc() {
    printf '%s' "$1" | tr '\n' ' ' | sed -e 's/%/%25/g' -e 's/&/%26/g' -e 's/+/%2B/g' -e 's/=/%3D/g' \
        -e 's/#/%23/g' -e 's/?/%3F/g' -e 's/ /+/g'
}

post() {
    timeout 20 wget -q -O /dev/null --header "X-Haoscar-Token: $TOKEN" --post-data "$2" "$SERVER$1"
}

report() { # STAGE PERCENT [BYTES [DETAIL]]
    STAGE=$1
    log "$1 $2% ${4:-}"
    post "/install/$MAC/progress" "stage=$1&percent=$2&bytes=${3:-0}&detail=$(urlenc "${4:-}")" ||
        log "could not report progress to $SERVER"
}

cleanup() {
    [ -n "$WATCHER" ] && kill "$WATCHER" 2>/dev/null
    WATCHER=
    if [ -n "$MOUNTED" ]; then
        for sub in dev/pts dev proc sys; do umount "$TARGET/$sub" 2>/dev/null; done
        umount "$TARGET" 2>/dev/null
        MOUNTED=
    fi
}

fail() { # STAGE REASON
    log "FAILED in stage $1: $2"
    cleanup
    if [ -n "$MAC" ]; then
        post "/install/$MAC/failed" "stage=$1&reason=$(urlenc "$2")" || log "could not report the failure to $SERVER"
    fi
    exit 1
}

tail_of() { tail -n 2 "$1" 2>/dev/null | tr '\n' ' '; }

# ------------------------------------------------------------------------------------------------ network, plan

fetch_plan() { # MAC -> sources the head's plan for this node; false when the head does not know the MAC
    # Kept in a variable, not a scratch file: the plan comes before the scratch directory, whose failure is
    # reported to the head under this node's MAC.
    plan=$(timeout 20 wget -q -O - --header "X-Haoscar-Token: $TOKEN" "$SERVER/install/$1/plan" 2>/dev/null) ||
        return 1
    eval "$plan"
}

network() {
    SERVER=${HAOSCAR_SERVER:-$(arg haoscar.server || true)}
    [ -n "$SERVER" ] || fail dhcp "no haoscar.server=URL on the kernel command line; boot through haoscar's iPXE script"
    TOKEN=${HAOSCAR_TOKEN:-$(arg haoscar.token || true)}
    [ -n "$TOKEN" ] || log "no haoscar.token on the kernel command line: the boot server will refuse this node"
    if [ -n "${HAOSCAR_MAC:-}" ]; then
        fetch_plan "$HAOSCAR_MAC" || fail dhcp "the boot server $SERVER does not know MAC $HAOSCAR_MAC"
        MAC=$HAOSCAR_MAC
        return 0
    fi
    tries=0
    while [ $tries -lt 15 ]; do
        for dev in /sys/class/net/*; do
            iface=${dev##*/}
            [ "$iface" = lo ] && continue
            ip link set "$iface" up 2>/dev/null
            udhcpc -i "$iface" -n -q -t 4 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 || continue
            mac=$(cat "$dev/address")
            if fetch_plan "$mac"; then
                MAC=$mac
                log "interface $iface ($mac) has a lease; the head knows it as $NODE"
                return 0
            fi
            log "the head does not know $iface ($mac); trying the next interface"
        done
        tries=$((tries + 1))
        sleep 2
    done
    log "no interface got a lease and a node record from $SERVER; assign this machine's MAC on the head node"
    exit 1
}

# ------------------------------------------------------------------------------------------------------- disk

find_disk() {
    if [ -n "${HAOSCAR_DISK:-}" ]; then echo "$HAOSCAR_DISK"; return 0; fi
    if arg haoscar.disk; then return 0; fi
    waited=0
    while [ $waited -lt 10 ]; do
        for name in vda sda nvme0n1 xvda hda; do
            if [ -b "/dev/$name" ]; then echo "/dev/$name"; return 0; fi
        done
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

disk_bytes() {
    if [ -b "$1" ]; then
        echo $(($(cat "/sys/class/block/${1##*/}/size") * 512))
    else
        stat -c %s "$1"
    fi
}

firmware() {
    if [ -n "${HAOSCAR_FIRMWARE:-}" ]; then echo "$HAOSCAR_FIRMWARE"; return 0; fi
    if arg haoscar.firmware; then return 0; fi
    if [ -d /sys/firmware/efi ]; then echo efi; else echo bios; fi
}

# Room for the files plus a fifth for file-system metadata and slack, plus 64 MiB for the journal and reserve (and
# the EFI system partition on a UEFI machine).
needed_bytes() {
    esp=0
    [ "$FIRMWARE" = efi ] && esp=$((ESP_MIB * 1048576))
    echo $(($1 + $1 / 5 + 67108864 + esp))
}

partition_of() { # DISK [NUMBER]
    case "$1" in
        *[0-9]) echo "${1}p${2:-1}" ;;
        *) echo "${1}${2:-1}" ;;
    esac
}

wait_for_partition() {
    # A loop device (the namespace standby's disk) is not re-read by sfdisk; ask for its partitions explicitly.
    [ -b "$1" ] || { command -v partx >/dev/null 2>&1 && partx -u "$DISK" >/dev/null 2>&1; }
    waited=0
    while [ ! -b "$1" ] && [ $waited -lt 20 ]; do
        sleep 0.5
        waited=$((waited + 1))
    done
    [ -b "$1" ] || fail disk "partition $1 did not appear after sfdisk"
}

check_disk() {
    DISK=$(find_disk) || fail disk "no disk found (looked for vda, sda, nvme0n1, xvda, hda); give haoscar.disk=DEVICE"
    have=$(disk_bytes "$DISK") || fail disk "cannot read the size of $DISK"
    need=$(needed_bytes "$IMAGE_BYTES")
    if [ "$have" -lt "$need" ]; then
        fail disk "disk too small: $DISK has $((have / 1048576)) MiB, image $IMAGE needs at least $((need / 1048576)) MiB"
    fi
    report disk 3 0 "$DISK: $((have / 1048576)) MiB for $((IMAGE_BYTES / 1048576)) MiB of image"
}

make_filesystem() {
    if [ "$FIRMWARE" = efi ]; then
        report disk 4 0 "partitioning $DISK (GPT: EFI system partition, ext4 root)"
        printf 'label: gpt\nstart=2048, size=%sMiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' \
            "$ESP_MIB" | sfdisk -q --wipe always --wipe-partitions always "$DISK" >$W/sfdisk.log 2>&1 ||
            fail disk "sfdisk $DISK: $(tail_of $W/sfdisk.log)"
        ESP=$(partition_of "$DISK" 1)
        PART=$(partition_of "$DISK" 2)
        wait_for_partition "$ESP"
        mkdosfs -n HAOSCAR_ESP "$ESP" >$W/mkfs.log 2>&1 || fail disk "mkdosfs $ESP: $(tail_of $W/mkfs.log)"
    else
        report disk 4 0 "partitioning $DISK (MBR, one ext4 root partition)"
        printf 'label: dos\nstart=2048, type=83, bootable\n' |
            sfdisk -q --wipe always --wipe-partitions always "$DISK" >$W/sfdisk.log 2>&1 ||
            fail disk "sfdisk $DISK: $(tail_of $W/sfdisk.log)"
        PART=$(partition_of "$DISK")
    fi
    wait_for_partition "$PART"
    report disk 6 0 "making ext4 on $PART"
    ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
    # extlinux (syslinux 6.04) cannot boot from ext4 with the 64bit or metadata_csum features.
    mkfs.ext4 -q -F -U "$ROOT_UUID" -L root -O ^64bit,^metadata_csum "$PART" >$W/mkfs.log 2>&1 ||
        fail disk "mkfs.ext4 $PART: $(tail_of $W/mkfs.log)"
    mkdir -p "$TARGET"
    mount -t ext4 "$PART" "$TARGET" || fail disk "cannot mount $PART"
    MOUNTED=1
    report disk 9 0 "ext4 on $PART mounted"
}

# ------------------------------------------------------------------------------------------------------ image

used_kb() { df -Pk "$TARGET" | awk 'NR == 2 { print $3 }'; }

pull_image() {
    base=$(used_kb)
    report image 10 0 "receiving $IMAGE version $IMAGE_VERSION ($((IMAGE_BYTES / 1048576)) MiB)"
    (
        while :; do
            sleep 1
            got=$((($(used_kb) - base) * 1024))
            percent=$((10 + 80 * got / (IMAGE_BYTES + 1)))
            [ $percent -gt 89 ] && percent=89
            report image $percent $got "receiving $IMAGE"
        done
    ) &
    WATCHER=$!
    # The stream is unpacked and hashed at once (tee into a fifo): a stream cut short or changed on the way
    # fails here, with wget's, tar's or the checksum's reason, before the node could be marked installed.
    fifo=$W/image.fifo
    sums=$W/image.sha256
    rm -f "$fifo" "$sums"
    mkfifo "$fifo" || fail image "cannot make a fifo in $W"
    sha256sum <"$fifo" >"$sums" &
    hasher=$!
    (
        set -o pipefail
        wget -q -O - --header "X-Haoscar-Token: $TOKEN" "$SERVER/install/$MAC/image.tar" 2>$W/wget.log |
            tee "$fifo" | tar -x -C "$TARGET" 2>$W/tar.log
    ) || { kill "$hasher" 2>/dev/null; rm -f "$fifo" "$sums"; fail image "receiving $IMAGE from $SERVER failed: $(tail_of $W/wget.log) $(tail_of $W/tar.log)"; }
    wait "$hasher"
    kill "$WATCHER" 2>/dev/null
    WATCHER=
    got_sum=$(cut -d ' ' -f 1 "$sums")
    rm -f "$fifo" "$sums"
    [ "$got_sum" = "$IMAGE_SHA256" ] ||
        fail image "the image stream of $IMAGE does not match its checksum (sha256 ${got_sum:-none}, the head says $IMAGE_SHA256): incomplete or damaged"
    [ -d "$TARGET/etc" ] || fail image "the image stream of $IMAGE held no /etc; is the image a root tree?"
    got=$((($(used_kb) - base) * 1024))
    report image 90 $got "received $IMAGE"
}

# -------------------------------------------------------------------------------------------- per-node files

write_network() {
    etc=$TARGET/etc
    mkdir -p "$etc/network" "$etc/haoscar"
    {
        echo "# Written by the haoscar installer for $NODE."
        echo "auto lo"
        echo "iface lo inet loopback"
        echo
        echo "auto $IFNAME"
        if [ "$IP_ASSIGNMENT" = static ]; then
            echo "iface $IFNAME inet static"
            echo "    address $IP/$PREFIX"
            [ -n "$GATEWAY" ] && echo "    gateway $GATEWAY"
        else
            echo "iface $IFNAME inet dhcp"
        fi
    } >"$etc/network/interfaces"
    {
        echo "# The node's identity as the haoscar installer wrote it (sh syntax)."
        echo "NODE='$NODE'"
        echo "FQDN='$FQDN'"
        echo "IFNAME='$IFNAME'"
        echo "MAC='$MAC'"
        echo "IP_ASSIGNMENT='$IP_ASSIGNMENT'"
        echo "IP='$IP'"
        echo "PREFIX='$PREFIX'"
        echo "GATEWAY='$GATEWAY'"
    } >"$etc/haoscar/node.conf"
    # Keep the interface name the cluster database uses, whatever udev would call it.
    if [ -d "$etc/systemd" ]; then
        mkdir -p "$etc/systemd/network"
        printf '[Match]\nMACAddress=%s\n\n[Link]\nName=%s\n' "$MAC" "$IFNAME" >"$etc/systemd/network/10-haoscar-$IFNAME.link"
    fi
}

install_munge_key() { # the cluster's munge key from this node's plan (never in an image): 0400, owned by munge
    [ -n "${MUNGE_KEY:-}" ] || return 0 # the head has no key yet: slurm sync --push-key brings it later
    key="$TARGET/etc/haoscar/slurm/munge.key"
    mkdir -p "${key%/*}" && rm -f "$key" &&
        (umask 277 && printf '%s' "$MUNGE_KEY" | base64 -d >"$key") || fail configure "cannot write the munge key $key"
    # The image's munge account when it has one (its uid, not the installer's), else root.
    owner=$(awk -F: '$1 == "munge" { print $3 ":" $4; exit }' "$TARGET/etc/passwd" 2>/dev/null)
    chown "${owner:-0:0}" "$key" && chmod 400 "$key" || fail configure "cannot set the owner of the munge key $key"
}

# A file of the image (its packages decide which parts of joining apply). A symlink counts as it is: an absolute
# one (Debian's alternatives: /usr/sbin/slurmd -> /etc/alternatives/slurmd) points into the image, not here.
has() { [ -e "$TARGET$1" ] || [ -L "$TARGET$1" ]; }

join_cluster() { # what makes the node one of the cluster's: /home, time, munge and slurmd from the heads' alias
    [ -n "${SERVICE_ADDRESS:-}" ] || { log "the head sent no service address: the node will not join"; return 0; }
    etc=$TARGET/etc
    if has /sbin/mount.nfs; then
        # The spec's exports as the head rendered them (hard mounts from the alias: docs/nfs.md says why).
        printf '%s\n' "${NFS_FSTAB:-}" | while read -r source mountpoint rest; do
            [ -n "$source" ] || continue
            mkdir -p "$TARGET$mountpoint" && echo "$source $mountpoint $rest" >>"$etc/fstab"
        done
        # What docs/nfs.md says a node needs besides (the stale-handle remount agent and its enabled unit).
        if [ -n "${NODE_FILES:-}" ]; then
            printf '%s' "$NODE_FILES" | base64 -d | tar -x -C "$TARGET" 2>$W/files.log ||
                fail configure "unpacking the node files: $(tail_of $W/files.log)"
        fi
    fi
    if has /lib/systemd/systemd-timesyncd; then
        mkdir -p "$etc/systemd/timesyncd.conf.d"
        printf '# Written by the haoscar installer: time from the head nodes.\n[Time]\nNTP=%s\nFallbackNTP=\n' \
            "$SERVICE_ADDRESS" >"$etc/systemd/timesyncd.conf.d/haoscar.conf"
    fi
    if has /usr/sbin/munged; then
        echo "OPTIONS=\"--key-file=/etc/haoscar/slurm/munge.key\"" >"$etc/default/munge"
    fi
    if has /usr/sbin/slurmd; then
        # Configless: slurmd fetches slurm.conf from the controller on the alias, so a new node needs no push.
        echo "SLURMD_OPTIONS=\"--conf-server $SERVICE_ADDRESS:$SLURMCTLD_PORT\"" >"$etc/default/slurmd"
        mkdir -p "$etc/systemd/system/slurmd.service.d" "$etc/tmpfiles.d"
        # Debian's unit starts only with /etc/slurm/slurm.conf; configless has none. Retry while no head answers.
        printf '[Unit]\nConditionPathExists=\nAfter=munge.service\n\n[Service]\nRestart=on-failure\nRestartSec=5\n' \
            >"$etc/systemd/system/slurmd.service.d/haoscar.conf"
        : >"$etc/tmpfiles.d/haoscar-slurm.conf"
        for dir in $SLURM_DIRS; do
            case "$dir" in
                /run/*) echo "d $dir 0755 root root -" >>"$etc/tmpfiles.d/haoscar-slurm.conf" ;;
                *) mkdir -p "$TARGET$dir" ;;
            esac
        done
    fi
}

install_accounts() { # cluster sync's script in the new system: the cluster's users and groups, hosts and keys
    [ -n "${ACCOUNTS_SCRIPT:-}" ] || return 0 # no script from the head: the node gets them at the next sync
    [ -x "$TARGET/bin/bash" ] || { log "image $IMAGE has no bash: the cluster's users come with the next sync"; return 0; }
    report configure 94 0 "the cluster's users, groups, hosts and keys"
    script=$TARGET/run/haoscar-accounts.sh
    mkdir -p "$TARGET/run" "$TARGET/dev" "$TARGET/proc" && printf '%s' "$ACCOUNTS_SCRIPT" | base64 -d >"$script" ||
        fail configure "cannot write the accounts script in the new system"
    mount -o bind /dev "$TARGET/dev" && mount -t proc proc "$TARGET/proc" ||
        fail configure "cannot mount /dev and /proc in the new system for the accounts script"
    chroot "$TARGET" /bin/bash /run/haoscar-accounts.sh >$W/accounts.log 2>&1
    code=$?
    umount "$TARGET/proc" "$TARGET/dev"
    rm -f "$script"
    [ $code -eq 0 ] || fail configure "the cluster's accounts script failed (exit $code): $(tail_of $W/accounts.log)"
}

configure() {
    report configure 91 0 "host name, addresses, /etc/hosts, fstab"
    echo "$NODE" >"$TARGET/etc/hostname"
    printf '%s\n' "$HOSTS" >"$TARGET/etc/hosts"
    write_network
    echo "UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1" >"$TARGET/etc/fstab"
    [ -f "$TARGET/etc/machine-id" ] && : >"$TARGET/etc/machine-id"
    if [ -n "${AUTHORIZED_KEYS:-}" ]; then
        # The head's key for root (images carry no /root of the head they were taken from).
        mkdir -p "$TARGET/root/.ssh" && chmod 700 "$TARGET/root/.ssh"
        grep -qxF "$AUTHORIZED_KEYS" "$TARGET/root/.ssh/authorized_keys" 2>/dev/null ||
            printf '%s\n' "$AUTHORIZED_KEYS" >>"$TARGET/root/.ssh/authorized_keys"
        chmod 600 "$TARGET/root/.ssh/authorized_keys"
    fi
    install_munge_key
    join_cluster
    if [ -x "$TARGET/usr/bin/ssh-keygen" ]; then
        report configure 93 0 "fresh ssh host keys"
        rm -f "$TARGET"/etc/ssh/ssh_host_*
        mkdir -p "$TARGET/dev" "$TARGET/proc"
        mount -o bind /dev "$TARGET/dev" && mount -t proc proc "$TARGET/proc" ||
            fail configure "cannot mount /dev and /proc in the new system for ssh-keygen"
        chroot "$TARGET" /usr/bin/ssh-keygen -A >$W/ssh.log 2>&1 || fail configure "ssh-keygen -A: $(tail_of $W/ssh.log)"
        umount "$TARGET/proc" "$TARGET/dev"
    fi
    install_accounts
}

boot_config() { # KERNEL [INITRD]: a syslinux configuration that boots the new root
    echo "# Written by the haoscar installer for $NODE."
    echo "DEFAULT haoscar"
    echo "PROMPT 0"
    echo "TIMEOUT 1"
    echo "LABEL haoscar"
    echo "    LINUX $1"
    [ -n "${2:-}" ] && echo "    INITRD $2"
    echo "    APPEND root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0"
}

efi_bootloader() { # KERNEL INITRD (paths inside the new root)
    report bootloader 95 0 "syslinux.efi on the EFI system partition $ESP"
    # syslinux.efi reads its configuration, kernel and initrd from its own FAT partition, the removable-media path
    # every UEFI firmware tries (no NVRAM boot entry needed); the hook written below keeps that kernel current.
    mkdir -p $W/esp
    mount -t vfat "$ESP" $W/esp || fail bootloader "cannot mount the EFI system partition $ESP"
    dir=$W/esp/EFI/BOOT
    mkdir -p "$dir"
    (
        cp /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi "$dir/BOOTX64.EFI" &&
            cp /usr/lib/syslinux/modules/efi64/ldlinux.e64 "$dir/" &&
            cp "$TARGET$1" "$dir/vmlinuz" &&
            { [ ! -f "$TARGET$2" ] || cp "$TARGET$2" "$dir/initrd.img"; }
    ) 2>$W/esp.log || { umount $W/esp; fail bootloader "copying to the EFI system partition: $(tail_of $W/esp.log)"; }
    if [ -f "$TARGET$2" ]; then boot_config vmlinuz initrd.img; else boot_config vmlinuz; fi >"$dir/syslinux.cfg"
    umount $W/esp
    # The installed system mounts the ESP and copies every new kernel and initramfs there (kernel upgrades).
    mkdir -p "$TARGET/boot/efi" "$TARGET/etc/kernel/postinst.d" "$TARGET/etc/initramfs/post-update.d"
    echo "LABEL=HAOSCAR_ESP /boot/efi vfat umask=0077,nofail 0 2" >>"$TARGET/etc/fstab"
    for hook in "$TARGET/etc/kernel/postinst.d/zz-haoscar-esp" "$TARGET/etc/initramfs/post-update.d/zz-haoscar-esp"; do
        cp /usr/lib/haoscar/esp-kernel-hook.sh "$hook" && chmod 755 "$hook" ||
            fail bootloader "cannot write the kernel hook $hook"
    done
    sync
    report bootloader 99 0 "boots $1 (copied to $ESP) from UEFI, root UUID=$ROOT_UUID"
}

bootloader() {
    kernel=$(ls "$TARGET"/boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)
    [ -z "$kernel" ] && [ -f "$TARGET/boot/vmlinuz" ] && kernel=$TARGET/boot/vmlinuz
    [ -n "$kernel" ] || fail bootloader "image $IMAGE has no kernel (no /boot/vmlinuz-*); add a kernel package to it"
    kernel=/boot/${kernel##*/}
    initrd=/boot/initrd.img-${kernel#/boot/vmlinuz-}
    [ -f "$TARGET$initrd" ] || initrd=/boot/initrd.img
    if [ "$FIRMWARE" = efi ]; then
        efi_bootloader "$kernel" "$initrd"
        return 0
    fi
    report bootloader 95 0 "extlinux on $DISK"
    mkdir -p "$TARGET/boot/extlinux"
    extlinux --install "$TARGET/boot/extlinux" >$W/extlinux.log 2>&1 ||
        fail bootloader "extlinux: $(tail_of $W/extlinux.log)"
    if [ -f "$TARGET$initrd" ]; then boot_config "$kernel" "$initrd"; else boot_config "$kernel"; fi \
        >"$TARGET/boot/extlinux/extlinux.conf"
    dd if=/usr/lib/syslinux/mbr/mbr.bin of="$DISK" bs=440 count=1 conv=notrunc 2>$W/dd.log ||
        fail bootloader "writing the MBR to $DISK: $(tail_of $W/dd.log)"
    sync
    report bootloader 99 0 "boots $kernel from UUID=$ROOT_UUID"
}

finish() {
    cleanup
    sync
    tries=0
    until post "/install/$MAC/done" "seconds=$(($(date +%s) - STARTED))&version=$IMAGE_VERSION"; do
        tries=$((tries + 1))
        [ $tries -ge 5 ] && fail done "installed, but the head node at $SERVER did not take the completion report"
        sleep 2
    done
    log "installed $NODE from $IMAGE in $(($(date +%s) - STARTED)) s; post-install action: $POST_INSTALL"
    if [ "${HAOSCAR_NO_POWER:-0}" = 1 ]; then
        echo "post-install: $POST_INSTALL"
        return 0
    fi
    case "$POST_INSTALL" in
        reboot) reboot -f ;;
        shutdown) poweroff -f ;;
        *)
            # beep: wait for the operator, audibly, as SystemImager does.
            while :; do
                printf '\a'
                sleep 2
            done
            ;;
    esac
}

main() {
    STARTED=$(date +%s)
    # Never rm -r: an ESP left mounted under $W after a failure must not be emptied.
    trap 'cleanup; [ -z "$W" ] || { rm -f "$W"/*; rmdir "$W/esp" "$W" 2>/dev/null; }' EXIT
    network
    W=$(mktemp -d /tmp/haoscar-install.XXXXXX) ||
        fail node "cannot make a private scratch directory in /tmp (mktemp -d failed: is /tmp full or read-only?)"
    FIRMWARE=$(firmware)
    case "$FIRMWARE" in
        efi | bios) ;;
        *) fail node "haoscar.firmware=$FIRMWARE is neither efi nor bios; leave it out to detect the firmware" ;;
    esac
    report node 1 0 "node $NODE, image $IMAGE, $FIRMWARE firmware"
    [ "$IMAGE_OK" = 1 ] || fail image "$IMAGE_ERROR"
    check_disk
    make_filesystem
    pull_image
    configure
    bootloader
    finish
}

[ "${HAOSCAR_LIB:-0}" = 1 ] || main "$@"

#!/usr/bin/env bash
# Builds the Callbox appliance disk image: image/build/callbox.img (raw) and callbox.qcow2.
#
# Root filesystem: mmdebstrap (root mode, minbase, Debian 12) from Debian's
# archive, Callbox installed offline from wheels built on this host, the
# files under image/rootfs/ on top. Disk: GPT, a FAT boot partition with
# syslinux (BIOS) and systemd-boot (UEFI), an ext4 root made straight from
# the directory (mkfs.ext4 -d): no loop devices, no mounts. Needs root.
# Reproducible: fixed UUIDs, and every time stamp is SOURCE_DATE_EPOCH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
out=${IMAGE_BUILD_DIR:-$here/build}
python=${PYTHON:-$repo/.venv/bin/python}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Fixed identities (reproducibility; the boot entries name the root by PARTUUID).
disk_guid=5c0ab0c5-0000-4000-8000-000000000001
esp_guid=5c0ab0c5-0000-4000-8000-0000000000e5
root_guid=5c0ab0c5-0000-4000-8000-0000000000f5
root_fs_uuid=5c0ab0c5-0000-4000-8000-0000000000a5
esp_volume_id=5C0AB0C5
esp_mib=256
kernel_cmdline="root=PARTUUID=$root_guid rw rootwait console=tty0 console=ttyS0,115200n8 quiet loglevel=3 systemd.show_status=auto"

[[ $(id -u) -eq 0 ]] || { echo "image/build.sh: needs root (mmdebstrap root mode, file ownership in the root filesystem)" >&2; exit 1; }

mkdir -p "$out"
work="$out/work"
# An interrupted mmdebstrap may leave /proc, /sys, /dev mounted in its tree: never delete through them.
if grep -q " $work/" /proc/mounts; then
  echo "image/build.sh: file systems still mounted under $work (an interrupted build?); unmount them first" >&2
  exit 1
fi
rm -rf "$work"
mkdir -p "$work/wheels"

echo "== wheels (Callbox and its dependencies, built on this host)"
(cd "$repo" && CALLBOX_BUILD_JOBS=${CALLBOX_BUILD_JOBS:-1} "$python" setup.py -q \
  build_ext --build-temp build/native bdist_wheel --dist-dir "$work/wheels" >/dev/null)
"$python" -m pip wheel -q --wheel-dir "$work/wheels" "$work"/wheels/callbox-*.whl

echo "== root filesystem (mmdebstrap, Debian 12 minbase)"
packages=(
  # boot and the system
  linux-image-amd64 initramfs-tools systemd-sysv udev dbus kmod iproute2 procps less
  # first boot: grow the root partition and filesystem, make the TLS key
  cloud-guest-utils gdisk fdisk e2fsprogs openssl
  # Python for the venv (Debian's 3.11, as on the build host)
  python3 python3-venv
  # libraries the media core links, and systemd-python's
  libopus0 libspandsp2 libbcg729-0 libsrtp2-1 libmp3lame0 libssl3 libsystemd0 liburing2
  # prompt generation (espeak-ng speaks, sox shapes)
  espeak-ng sox
  # users' tools on the console
  lmdb-utils
  # the installer ISO boots this same root read-only (live-boot, only with boot=live on the
  # kernel's command line) and its installer decompresses the disk image (zstd)
  live-boot live-boot-initramfs-tools busybox zstd
)
mmdebstrap --mode=root --variant=minbase --format=directory \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --components=main \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook="sync-in $here/rootfs /" \
  --customize-hook="chroot \"\$1\" /bin/sh -ec '
      python3 -m venv /opt/callbox/venv
      /opt/callbox/venv/bin/pip install -q --no-index --no-cache-dir --find-links /tmp/wheels callbox
      rm -rf /tmp/wheels
      ln -sf /opt/callbox/venv/bin/callbox /usr/local/bin/callbox
      CALLBOX_DATA_DIR=/var/lib/callbox /opt/callbox/venv/bin/callbox prompts
      # sox loaded libpulse, which left a link named after the random machine id of this build
      rm -rf /root/.config/pulse
      systemd-sysusers
      systemctl enable systemd-networkd.service callbox-firstboot.service callbox-switch.service callbox-web.service callbox-console.service
      echo callbox > /etc/hostname
      passwd -l root
  '" \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; touch "$1"/etc/machine-id' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/tmp/*' \
  bookworm "$work/rootfs" "$mirror"
# mmdebstrap unmounts the /proc, /sys and /dev it mounted in the root, but one still busy at
# that moment stays mounted (it warns and goes on), and the steps below would then copy the
# host's /sys into the image: detach whatever is left.
for mounted in $(findmnt -rn -o TARGET | sort -r); do
  case $mounted in "$work/rootfs/"*) umount -l "$mounted" ;; esac
done

echo "== boot partition (FAT: syslinux for BIOS, systemd-boot for UEFI)"
rootfs=$work/rootfs
kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -1)
boot=$work/boot
mkdir -p "$boot/EFI/BOOT" "$boot/loader/entries" "$boot/syslinux"
cp "$kernel" "$boot/vmlinuz"
cp "$initrd" "$boot/initrd.img"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$boot/EFI/BOOT/BOOTX64.EFI"
printf 'default callbox.conf\ntimeout 0\nconsole-mode keep\n' > "$boot/loader/loader.conf"
printf 'title Callbox\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$kernel_cmdline" \
  > "$boot/loader/entries/callbox.conf"
cat > "$boot/syslinux/syslinux.cfg" <<CFG
SERIAL 0 115200
DEFAULT callbox
PROMPT 0
TIMEOUT 0
LABEL callbox
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $kernel_cmdline
CFG
esp=$work/esp.img
fat_image "$boot" "$esp" CALLBOXBOOT "$esp_volume_id" $((esp_mib * 1024))
syslinux --install --directory /syslinux "$esp"

echo "== root partition (ext4 from the directory)"
root_bytes=$(du -sb "$rootfs" | cut -f1)
root_mib=$(( root_bytes * 13 / 10 / 1048576 + 256 ))
rootimg=$work/root.img
rm -f "$rootimg"
find "$rootfs" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L callbox-root -U "$root_fs_uuid" \
  -E "hash_seed=$root_fs_uuid,root_owner=0:0" -d "$rootfs" "$rootimg" "${root_mib}M"
# mke2fs 1.47.0 copies each file's ctime and atime, which are when this build wrote and last
# read it (no tool sets a ctime): debugfs sets both to SOURCE_DATE_EPOCH inside the image.
(cd "$rootfs" && find . -printf "sif \"/%P\" ctime @$SOURCE_DATE_EPOCH\nsif \"/%P\" atime @$SOURCE_DATE_EPOCH\n") \
  | E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f - "$rootimg" >/dev/null 2>"$work/debugfs.log"
if grep -v '^debugfs ' "$work/debugfs.log" | grep -q .; then
  echo "image/build.sh: debugfs could not set every ctime and atime:" >&2; head "$work/debugfs.log" >&2; exit 1
fi

echo "== disk (GPT)"
img=$out/callbox.img
rm -f "$img"
disk_mib=$(( 1 + esp_mib + root_mib + 1 ))
truncate -s "${disk_mib}M" "$img"
sgdisk --clear --disk-guid="$disk_guid" \
  --new=1:1M:+${esp_mib}M --typecode=1:ef00 --partition-guid=1:$esp_guid --change-name=1:boot \
  --attributes=1:set:2 \
  --new=2:0:+${root_mib}M --typecode=2:8304 --partition-guid=2:$root_guid --change-name=2:root \
  "$img" >/dev/null
dd if="$esp" of="$img" bs=1M seek=1 conv=notrunc status=none
dd if="$rootimg" of="$img" bs=1M seek=$((1 + esp_mib)) conv=notrunc status=none
# BIOS: syslinux's GPT-aware MBR boots the partition marked legacy-BIOS-bootable.
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$img" "$out/callbox.qcow2"
# The root directory stays for the installer ISO's live system (image/build-iso.sh).
rm -rf "$out/rootfs"
mv "$rootfs" "$out/rootfs"
rm -rf "$work"
echo "== done: $img ($disk_mib MiB) and $out/callbox.qcow2"

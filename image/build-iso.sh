#!/usr/bin/env bash
# Builds the Callbox installer ISO: image/build/callbox-installer.iso, from the
# outputs of image/build.sh (run it first: make iso does).
#
# A hybrid ISO 9660 image (a CD, or a USB stick written with dd) that boots by
# BIOS (isolinux) and UEFI (systemd-boot on an El Torito EFI image, also a GPT
# partition for USB). Its entries boot the appliance's own kernel and root
# filesystem (a squashfs, read-only under an overlay in memory, by live-boot):
#   live            the appliance running from the medium, nothing written to disk
#   install         the installer (image/rootfs/usr/lib/callbox/install-to-disk),
#                   which writes the disk image (zstd-compressed on the medium) to
#                   a chosen disk, checks it and powers off; asks on the screen
#   install-serial  the same, asking on the serial console ttyS0
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
out=${IMAGE_BUILD_DIR:-$here/build}
jobs=${CALLBOX_BUILD_JOBS:-1}
rootfs=$out/rootfs
disk_image=$out/callbox.img
iso=$out/callbox-installer.iso
efi_volume_id=5C0AB0CE

[[ $(id -u) -eq 0 ]] || { echo "image/build-iso.sh: needs root (to read the root filesystem's files)" >&2; exit 1; }
[[ -d $rootfs && -f $disk_image ]] \
  || { echo "image/build-iso.sh: no $disk_image and $rootfs: run image/build.sh (make image) first" >&2; exit 1; }

work=$out/iso-work
rm -rf "$work"
medium=$work/medium
mkdir -p "$medium/live" "$medium/callbox" "$medium/isolinux"

common="boot=live quiet loglevel=3 systemd.show_status=auto"
installer="systemd.unit=callbox-installer.target"
# The last console= is /dev/console, where the installer asks its questions.
screen_last="console=ttyS0,115200n8 console=tty0"
serial_last="console=tty0 console=ttyS0,115200n8"

echo "== live system (the appliance's kernel and root as squashfs)"
cp "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)" "$medium/live/vmlinuz"
cp "$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -1)" "$medium/live/initrd.img"
# mksquashfs takes every time stamp from SOURCE_DATE_EPOCH.
mksquashfs "$rootfs" "$medium/live/filesystem.squashfs" -noappend -quiet -no-progress \
  -comp zstd -processors "$jobs" \
  -e boot >/dev/null

echo "== disk image for the installer (zstd) and its manifest"
zstd -q -T"$jobs" -f "$disk_image" -o "$medium/callbox/callbox.img.zst"
printf 'bytes=%s\nsha256=%s\n' "$(stat -c %s "$disk_image")" \
  "$(sha256sum "$disk_image" | cut -d' ' -f1)" > "$medium/callbox/callbox.img.manifest"

echo "== BIOS: isolinux"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$medium/isolinux/"
cat > "$medium/isolinux/boot.txt" <<TXT
Callbox installer. Type an entry's name and Enter (live starts in 15 seconds):
  live            Callbox running from this medium (nothing is written to disk)
  install         Install Callbox to disk (asks on the screen)
  install-serial  Install Callbox to disk (asks on the serial console)
Unattended: install callbox.install=/dev/sda callbox.install_confirm=yes
TXT
cat > "$medium/isolinux/isolinux.cfg" <<CFG
SERIAL 0 115200
DISPLAY /isolinux/boot.txt
PROMPT 1
TIMEOUT 150
DEFAULT live
LABEL live
  KERNEL /live/vmlinuz
  INITRD /live/initrd.img
  APPEND $common $serial_last
LABEL install
  KERNEL /live/vmlinuz
  INITRD /live/initrd.img
  APPEND $common $installer $screen_last
LABEL install-serial
  KERNEL /live/vmlinuz
  INITRD /live/initrd.img
  APPEND $common $installer $serial_last
CFG

echo "== UEFI: systemd-boot on the El Torito EFI image"
esp=$work/esp
mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$medium/live/vmlinuz" "$medium/live/initrd.img" "$esp/"
printf 'default 10-live.conf\ntimeout 15\nconsole-mode keep\n' > "$esp/loader/loader.conf"
entry() {  # entry FILE TITLE OPTIONS
  printf 'title %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$2" "$3" > "$esp/loader/entries/$1"
}
entry 10-live.conf "Callbox (live, nothing is written to disk)" "$common $serial_last"
entry 20-install.conf "Install Callbox to disk" "$common $installer $screen_last"
entry 30-install-serial.conf "Install Callbox to disk (serial console)" "$common $installer $serial_last"
esp_kib=$(( $(du -sk "$esp" | cut -f1) + 4096 ))
fat_image "$esp" "$medium/efi.img" CALLBOXEFI "$efi_volume_id" "$esp_kib"

echo "== hybrid ISO (xorriso)"
find "$medium" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
xorriso -as mkisofs -quiet -o "$iso" -V CALLBOX_INSTALLER -r -J \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  -eltorito-alt-boot -e efi.img -no-emul-boot -isohybrid-gpt-basdat \
  "$medium"
rm -rf "$work"
echo "== done: $iso ($(( $(stat -c %s "$iso") / 1048576 )) MiB)"

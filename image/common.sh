# Shared by image/build.sh and image/build-iso.sh (sourced, not run).
# Sets $repo and the reproducibility environment, and makes FAT images.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Every time stamp in the outputs: the last commit's, so a rebuild of a commit gives the same bytes.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 1767225600)}
export LC_ALL=C.UTF-8 TZ=UTC
# mtools: no geometry checks on an image file.
export MTOOLS_SKIP_CHECK=1

# fat_image DIRECTORY IMAGE LABEL VOLUME_ID KIB: a FAT32 image of KIB KiB holding
# DIRECTORY's contents, its serial number, times and file order fixed.
fat_image() {
  local directory=$1 image=$2 label=$3 volume_id=$4 kib=$5
  rm -f "$image"
  find "$directory" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  mkfs.vfat -C -F 32 -n "$label" -i "$volume_id" --invariant "$image" "$kib" >/dev/null
  (cd "$directory" && mcopy -s -m -i "$image" -- * ::/)
}

#!/usr/bin/env bash
# Builds the appliance image twice from this checkout (image/build/repro-a and
# repro-b) and compares the raw disks byte for byte (make image-repro). When
# they differ, says which partition and lists the files of the two root
# filesystems whose contents or metadata differ. Needs root; two builds' time.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
base=$here/build

for run in a b; do
  start=$(date +%s)
  IMAGE_BUILD_DIR=$base/repro-$run "$here/build.sh"
  echo "== build $run took $(( $(date +%s) - start )) s"
done

a=$base/repro-a b=$base/repro-b
if cmp -s "$a/callbox.img" "$b/callbox.img"; then
  echo "== reproducible: the two builds' callbox.img are identical ($(sha256sum < "$a/callbox.img" | cut -d' ' -f1))"
  exit 0
fi
echo "== NOT reproducible: the two builds' callbox.img differ"
# The partitions' places, from the GPT (start and end sectors).
sgdisk -p "$a/callbox.img" | awk '/^ +[0-9]+ /{print $1, $2, $3}' | while read -r number first last; do
  count=$(( last - first + 1 ))
  if ! cmp -s <(dd if="$a/callbox.img" bs=512 skip="$first" count="$count" status=none) \
              <(dd if="$b/callbox.img" bs=512 skip="$first" count="$count" status=none); then
    echo "   partition $number differs"
  fi
done
echo "== files of the root filesystems that differ (contents, mode, owner, mtime, size):"
listing() { (cd "$1/rootfs" && find . -printf '%p %M %U:%G %T@ %s\n' | sort); }
diff <(listing "$a") <(listing "$b") | sed -n 's/^[<>] /   /p' | sort -u | head -50
diff -rq --no-dereference "$a/rootfs" "$b/rootfs" | head -50
exit 1

#!/usr/bin/env bash
# Prepare ImageNet (ILSVRC2012) for biggan.data. Download the two tars by hand from image-net.org
# (an account is needed) and put them in the TFDS manual-download folder:
#     ~/tensorflow_datasets/downloads/manual/ILSVRC2012_img_train.tar   (~138 GiB)
#     ~/tensorflow_datasets/downloads/manual/ILSVRC2012_img_val.tar     (~6.3 GiB)
# ($TFDS_DATA_DIR replaces ~/tensorflow_datasets when set.) Then ONE of:
#
#   scripts/prepare_imagenet.sh tfds
#       = tfds build imagenet2012 --file_format=array_record  (data.source='tfds').
#       TFDS's builders need TensorFlow: pip install tensorflow-cpu (a ~261 MiB wheel).
#
#   scripts/prepare_imagenet.sh folder OUT_DIR
#       TensorFlow-free: extracts OUT_DIR/train/<wnid>/*.JPEG and OUT_DIR/val/<wnid>/*.JPEG
#       (data.source='folder'; sorted wnids = the TFDS / pretrained-BigGAN class indices).
#       Validation labels come from tensorflow-datasets' validation_labels.txt (pip package).
#
# Either way, then build the fast cache at the model resolution, e.g.
#   python -m biggan.data build-cache --source tfds:imagenet2012 --resolution 128 --out CACHE
#   python -m biggan.data build-cache --source folder:OUT_DIR/train --resolution 128 --out CACHE
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
mode="${1:-}"
data_dir="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}"
manual_dir="${MANUAL_DIR:-$data_dir/downloads/manual}"
train_tar="$manual_dir/ILSVRC2012_img_train.tar"
val_tar="$manual_dir/ILSVRC2012_img_val.tar"

need_tar() {
  if [[ ! -f "$1" ]]; then
    echo "error: missing $1" >&2
    echo "  expected the ILSVRC2012 tar downloaded from image-net.org in $manual_dir" >&2
    echo "  (set MANUAL_DIR or TFDS_DATA_DIR if it is elsewhere)" >&2
    exit 1
  fi
}

case "$mode" in
  tfds)
    need_tar "$train_tar"; need_tar "$val_tar"
    if ! python -c "import tensorflow" 2>/dev/null; then
      echo "error: 'tfds build' needs TensorFlow, which is not installed." >&2
      echo "  pip install tensorflow-cpu   (or use: $0 folder OUT_DIR, which needs no TensorFlow)" >&2
      exit 1
    fi
    tfds build imagenet2012 --file_format=array_record --data_dir="$data_dir" \
      --manual_dir="$manual_dir"
    ;;
  folder)
    out="${2:-}"; [[ -n "$out" ]] || usage
    need_tar "$train_tar"; need_tar "$val_tar"
    mkdir -p "$out/train" "$out/val"
    echo "extracting train classes into $out/train ..."
    tar -tf "$train_tar" | grep '\.tar$' | while read -r class_tar; do
      wnid="${class_tar%.tar}"
      mkdir -p "$out/train/$wnid"
      tar -xOf "$train_tar" "$class_tar" | tar -x -C "$out/train/$wnid"
      echo "  $wnid: $(ls "$out/train/$wnid" | wc -l) images"
    done
    echo "extracting validation images into $out/val ..."
    tmp="$out/val/.flat"; mkdir -p "$tmp"
    tar -xf "$val_tar" -C "$tmp"
    python - "$tmp" "$out/val" <<'PY'
import os, sys
flat, out = sys.argv[1], sys.argv[2]
try:
  import tensorflow_datasets  # only for its bundled label list, not imported by biggan
except ImportError:
  sys.exit("error: validation labels come from tensorflow-datasets' validation_labels.txt: "
           "pip install tensorflow-datasets")
labels_path = os.path.join(os.path.dirname(tensorflow_datasets.__file__), "datasets",
                           "imagenet2012", "validation_labels.txt")
with open(labels_path) as f:
  labels = f.read().strip().splitlines()  # one wnid per image, in sorted file-name order
names = sorted(os.listdir(flat))
if len(names) > len(labels):
  sys.exit(f"error: {len(names)} validation images but {len(labels)} labels in {labels_path}")
for name, wnid in zip(names, labels):
  os.makedirs(os.path.join(out, wnid), exist_ok=True)
  os.replace(os.path.join(flat, name), os.path.join(out, wnid, name))
os.rmdir(flat)
print(f"  {len(names)} validation images in {len(set(labels[:len(names)]))} class folders")
PY
    echo "done: python -m biggan.data build-cache --source folder:$out/train --resolution 128 --out CACHE"
    ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# Writes a small Fashion-MNIST directory (raw IDX files) from the real one, so that example runs in
# tests take seconds (the linear probe reads the whole test split):
#   make_small_fashion_mnist.sh SRC OUT TRAIN TEST [OFFSET]
# OUT gets the first TRAIN training and TEST test images and labels of SRC, starting at image
# OFFSET (default 0): two OFFSETs give two data sets of the same size and different content.
set -euo pipefail
src=$1 out=$2 train=$3 test=$4 offset=${5:-0}
mkdir -p "$out"

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }

# split images|labels count: one IDX file of `count` items from `offset` on.
slice() {
  local name=$1 kind=$2 count=$3 item header
  if [[ $kind == images ]]; then item=784 header=16; else item=1 header=8; fi
  {
    if [[ $kind == images ]]; then printf '\x00\x00\x08\x03'; be32 "$count"; be32 28; be32 28
    else printf '\x00\x00\x08\x01'; be32 "$count"; fi
    # head stops reading early: the SIGPIPE that gzip and tail then get is expected.
    (set +o pipefail; gzip -dc "$src/$name.gz" | tail -c +$((header + offset * item + 1)) | head -c $((count * item)))
  } > "$out/$name"
  local size
  size=$(stat -c %s "$out/$name")
  ((size == header + count * item)) || { echo "make_small_fashion_mnist: $src/$name.gz is too short" >&2; exit 1; }
}
slice train-images-idx3-ubyte images "$train"
slice train-labels-idx1-ubyte labels "$train"
slice t10k-images-idx3-ubyte images "$test"
slice t10k-labels-idx1-ubyte labels "$test"

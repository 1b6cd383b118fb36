#!/usr/bin/env bash
# Prints the raw and gzipped size of each file given.
set -euo pipefail
for file in "$@"; do
  raw=$(wc -c <"$file")
  gzipped=$(gzip -9 -n -c "$file" | wc -c)
  printf 'size: %s %d bytes raw, %d bytes gzipped\n' "$file" "$raw" "$gzipped"
done

#!/bin/sh
# Copies the real event logs from shared/testdata/eventlogs (top level, edge/, unlabeled/) into
# corpus/eventlog/, the seed corpus of the `eventlog` fuzz target. corpus/ is git-ignored.
# Run from anywhere; shared/ is looked up beside the repository (or a parent of it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$here
while [ "$dir" != / ]; do
    if [ -d "$dir/shared/testdata/eventlogs" ]; then break; fi
    dir=$(dirname "$dir")
done
src=$dir/shared/testdata/eventlogs
[ -d "$src" ] || { echo "seed_corpus.sh: shared/testdata/eventlogs not found above $here" >&2; exit 1; }
mkdir -p "$here/corpus/eventlog"
n=0
for f in "$src"/*.bin "$src"/edge/*.bin "$src"/unlabeled/*.bin; do
    cp "$f" "$here/corpus/eventlog/$(basename "$(dirname "$f")")_$(basename "$f")"
    n=$((n + 1))
done
echo "seeded $n files into $here/corpus/eventlog"

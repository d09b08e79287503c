#!/usr/bin/env bash
# Re-records key->server mappings from the real nginx and libmemcached and compares them with
# the vectors committed under tests/data/compat (which tests/presets.rs replays through lbkit).
# So the committed vectors are shown, on every CI run, to be what the real programs produce.
# Needs nginx, libmemcached-dev, cc and python3 (.ci/run installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 "$here/scripts/record-nginx.py" "$out"
"$here/scripts/record-ketama.sh" "$out"
status=0
for fresh in "$out"/*.tsv; do
  name=$(basename "$fresh")
  committed="$here/tests/data/compat/$name"
  # Line 1 names the program's version; the servers and every key->server line must match.
  if ! diff -q <(tail -n +2 "$committed") <(tail -n +2 "$fresh") >/dev/null; then
    echo "MISMATCH $name: $(head -1 "$fresh")" >&2
    diff <(tail -n +2 "$committed") <(tail -n +2 "$fresh") | head -5 >&2
    status=1
  else
    echo "ok $name ($(($(wc -l < "$fresh") - 2)) keys, $(head -1 "$fresh" | cut -c3-40))"
  fi
done
exit $status

#!/usr/bin/env bash
# Re-records key->server mappings from the real nginx and libmemcached, and from the Envoy/gRPC
# models of scripts/record-envoy.py, and compares them with the vectors committed under
# tests/data/compat (which tests/presets.rs replays through lbkit). So the committed vectors are
# shown, on every CI run, to be what the real programs produce, and the Envoy/gRPC ones to be
# what a model that first reproduces Envoy's and grpc-go's own test vectors produces.
# Needs nginx, libmemcached-dev, cc, python3 and its xxhash package (.ci/run installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 "$here/scripts/record-envoy.py" "$out"  # exits non-zero if an upstream vector differs
python3 "$here/scripts/record-nginx.py" "$out"
"$here/scripts/record-ketama.sh" "$out"
status=0
for fresh in "$out"/*.tsv; do
  name=$(basename "$fresh")
  committed="$here/tests/data/compat/$name"
  # Line 1 names the program's version; the servers and every key->server line must match.
  # The models' line 1 holds the parameters the tests read (ring sizes, table size): it must too.
  from=2
  case $name in envoy-* | grpc-*) from=1 ;; esac
  if ! diff -q <(tail -n +$from "$committed") <(tail -n +$from "$fresh") >/dev/null; then
    echo "MISMATCH $name: $(head -1 "$fresh")" >&2
    diff <(tail -n +$from "$committed") <(tail -n +$from "$fresh") | head -5 >&2 || true
    status=1
  else
    echo "ok $name ($(($(wc -l < "$fresh") - 2)) keys, $(head -1 "$fresh" | cut -c3-40))"
  fi
done
for committed in "$here"/tests/data/compat/*.tsv; do
  name=$(basename "$committed")
  if [ ! -f "$out/$name" ]; then
    echo "MISSING $name: committed, but no recorder writes it any more" >&2
    status=1
  fi
done
exit $status

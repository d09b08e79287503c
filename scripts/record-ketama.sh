#!/usr/bin/env bash
# Record libmemcached weighted-ketama mappings for lbkit's ketama preset tests.
# Usage: scripts/record-ketama.sh OUT_DIR   (needs cc and libmemcached-dev)
set -euo pipefail
out=${1:?usage: scripts/record-ketama.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
bin=$(mktemp -d)/record-ketama
cc -O2 -o "$bin" "$here/record-ketama.c" -lmemcached
version=$(dpkg-query -W -f='${Version}' libmemcached11 2>/dev/null || echo unknown)

keys() { # the same deterministic key mix as scripts/record-nginx.py
  python3 - <<'PY'
out = [f"user:{i:08d}" for i in range(2500)] + [f"k{i}" for i in range(1500)]
x = 12345
for _ in range(1000):
    x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
    out.append(f"s/{x:x}/{x >> 40}")
print("\n".join(out))
PY
}

record() { # name servers...
  local name=$1; shift
  {
    echo "# libmemcached $version: MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED=1"
    echo "# servers: $*"
    keys | "$bin" "$@"
  } > "$out/ketama-$name.tsv"
  echo "ketama-$name: $(($(wc -l < "$out/ketama-$name.tsv") - 2)) keys" >&2
}

record one cache-a.internal:11211=1
record three cache-a.internal:11211=1 cache-b.internal:11211=1 cache-c.internal:11211=1
record ten-weighted $(for i in $(seq 0 9); do echo "cache-$i.internal:$((11211 + i % 2))=$((1 + i % 4))"; done)
record fifty-weighted $(for i in $(seq 0 49); do echo "10.1.$((i / 10)).$((i % 10)):$((11211 + (i % 3 == 0)))=$((1 + (i * 7) % 5))"; done)

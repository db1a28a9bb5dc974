#!/usr/bin/env bash
# The signal-control benchmark in SUMO (docs/BENCHMARKS.md, "Signal control in SUMO"): every
# citygate controller on the kit's dev scenarios D1 and D2, 10 seeds each, scored by the kit's
# score.py, and compared with the kit's baselines by compare.py.
#
#   tests/sumo-bench.sh [--seeds 1-10] [--jobs 2] [--controllers look_ahead,max_pressure,...]
#                       [--baselines]
#
# Results: target/sumo-results/<scenario>/citygate-<controller>_s<seed>.json. The baselines are
# the kit's (baselines.py, CPU heavy): with --baselines they are run too (into the same folder),
# otherwise compare.py compares with whatever baseline results are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEEDS=1-10
JOBS=2
CONTROLLERS=look_ahead,max_pressure,actuated,fixed_time
BASELINES=0
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) SEEDS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --controllers) CONTROLLERS=$2; shift 2 ;;
    --baselines) BASELINES=1; shift ;;
    *) echo "tests/sumo-bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
KIT=${SUMO_KIT:-$ROOT/../shared/sumo}
bash tests/sumo.sh >/dev/null
export PATH=$ROOT/.venv-sumo/bin:$PATH
cargo build --release -q
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/citygate
SCEN=$ROOT/target/sumo-scenarios
RES=$ROOT/target/sumo-results
mkdir -p "$RES/D1" "$RES/D2"
for S in D1 D2; do
  "$BIN" sumo import --net "$SCEN/$S/net_static.net.xml" -o "$SCEN/$S/citygate.toml" | tail -1
done
a=${SEEDS%-*}; b=${SEEDS#*-}
jobs=()
for S in D1 D2; do
  for C in ${CONTROLLERS//,/ }; do
    for N in $(seq "$a" "$b"); do jobs+=("$S $C $N"); done
  done
done
run_one() {
  set -euo pipefail
  read -r S C N <<<"$1"
  local name=citygate-${C//_/-}
  (cd "$SCEN/$S" && nice "$BIN" sumo --sumocfg scenario.sumocfg --config citygate.toml \
      --controller "$C" --seed "$N" --progress-every 0 \
      --output-prefix "../../sumo-results/$S/${name}_s$N." >/dev/null)
  python3 "$KIT/score.py" --scenario "$SCEN/$S" --prefix "$RES/$S/${name}_s$N." \
    --controller "$name" --seed "$N" -o "$RES/$S/${name}_s$N.json"
  echo "$S $name seed $N: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('mean delay', d['mean_delay_s'], 's, p95', d['p95_delay_s'], 's, safety violations', d['safety_violations'])" "$RES/$S/${name}_s$N.json")"
}
export -f run_one
export BIN SCEN RES KIT
printf '%s\n' "${jobs[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
if [ "$BASELINES" = 1 ]; then
  .venv-sumo/bin/pip install -q --disable-pip-version-check "libsumo==1.28.0"
  nice python3 "$KIT/baselines.py" "$RES" "$SCEN/D1" "$SCEN/D2" --seeds "$SEEDS" --jobs "$JOBS"
fi
python3 "$KIT/compare.py" "$RES" || true

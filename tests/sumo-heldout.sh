#!/usr/bin/env bash
# A held-out check of citygate's look-ahead controller in SUMO (docs/bench/sumo-heldout.md): three
# scenarios built with the benchmark kit's own generator but with other demand and size than the
# dev scenarios D1 and D2, so that the controller cannot have been tuned to them; the kit's
# baselines and the look-ahead run on the same seeds, scored by score.py, compared by compare.py.
#
#   H1  one intersection (D1's geometry), D1's time-varying demand x 1.25 (heavier)
#   H2  one intersection (D1's geometry), D1's demand x 0.8, constant (--flat)
#   H3  a corridor of 3 signals 250 m apart, D2's demand x 1.1, Webster plan as in D2
#
# The peak set (--scenarios peak; docs/bench/sumo-peak.md): the regimes where adaptive control
# matters most, from moderate demand to well beyond capacity.
#   P1-P4  one intersection (D1's geometry), D1's time-varying demand x 1.0, 1.3, 1.6, 2.0
#   C1-C4  a corridor of 3 signals 250 m apart, D2's demand x 1.0, 1.4, 1.8, 2.2
#   L1     P2's demand (x 1.3) with the inner through lane of the north approach closed at the
#          stop line from 1200 s to 2400 s (a broken-down vehicle or works: a SUMO rerouter)
#   G1,G2  a 3x3 grid 200 m apart, tidal demand (tests/py/grid_demand.py) x 1.0 and x 1.5
#
#   tests/sumo-heldout.sh [--seeds 1-5] [--jobs 2] [--controller-name citygate-look-ahead]
#                         [--scenarios H1,H2,H3] [--rebuild] [--no-baselines]
#
# Scenarios: target/sumo-heldout/<H1|H2|H3> (built when missing, or again with --rebuild).
# Results:   target/sumo-heldout-results/<scenario>/<controller>_s<seed>.json. The baselines
#            (baselines.py, CPU heavy) run for a scenario when any of their results for the seeds
#            is missing (all of them again after --rebuild); --no-baselines never runs them.
# The binary is target/release/citygate (built here), or $CITYGATE_BIN when set (not built then).
# --controller-name names the look-ahead's results, so that two builds or two settings (the
# environment passes through to the binary) can sit side by side in one table.
# Exit status: 0 once the tables are printed, whether or not the look-ahead meets compare.py's
# bar; 1 when a run or the scoring of a run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEEDS=1-5
JOBS=2
NAME=citygate-look-ahead
REBUILD=0
BASELINES=1
SCENARIOS="H1 H2 H3"
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) SEEDS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --controller-name) NAME=$2; shift 2 ;;
    --scenarios) SCENARIOS=${2//,/ }; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --no-baselines) BASELINES=0; shift ;;
    *) echo "tests/sumo-heldout.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$SCENARIOS" = peak ] && SCENARIOS="P1 P2 P3 P4 C1 C2 C3 C4 L1 G1 G2"
KIT=${SUMO_KIT:-$ROOT/../shared/sumo}
bash tests/sumo.sh >/dev/null
export PATH=$ROOT/.venv-sumo/bin:$PATH
if [ -n "${CITYGATE_BIN:-}" ]; then
  BIN=$CITYGATE_BIN
else
  cargo build --release -q
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/citygate
fi
SCEN=$ROOT/target/sumo-heldout
RES=$ROOT/target/sumo-heldout-results
a=${SEEDS%-*}; b=${SEEDS#*-}

# The kit's scenario builder: sourcing it defines need_sumo, grid_net and finish (and TYPES)
# without running its main.
# shellcheck source=/dev/null
source "$KIT/make_scenarios.sh"
need_sumo
build() {
  local name=$1 d=$SCEN/$1 T
  mkdir -p "$d"
  case $name in
    H1)
      for T in $TYPES; do grid_net "$d/net_$T.net.xml" "$T" 1 1 100 100 300 A0; done
      python3 "$KIT/gen_demand.py" --scenario single --scale 1.25 -o "$d/flows.xml"
      finish "$d" H1 3600 "one intersection, D1's time-varying demand x1.25 (held out)" ;;
    H2)
      for T in $TYPES; do grid_net "$d/net_$T.net.xml" "$T" 1 1 100 100 300 A0; done
      python3 "$KIT/gen_demand.py" --scenario single --scale 0.8 --flat -o "$d/flows.xml"
      finish "$d" H2 3600 "one intersection, D1's demand x0.8, constant (held out)" ;;
    H3)
      for T in $TYPES; do grid_net "$d/net_$T.net.xml" "$T" 3 1 250 100 200 A0,B0,C0; done
      python3 "$KIT/gen_demand.py" --scenario corridor --n 3 --scale 1.1 -o "$d/flows.xml"
      finish "$d" H3 3600 "3-signal corridor, D2's demand x1.1 (held out)" -u -g 7 --min-cycle 70 ;;
    P1|P2|P3|P4|L1)
      local scale
      case $name in P1) scale=1.0 ;; P2|L1) scale=1.3 ;; P3) scale=1.6 ;; P4) scale=2.0 ;; esac
      for T in $TYPES; do grid_net "$d/net_$T.net.xml" "$T" 1 1 100 100 300 A0; done
      python3 "$KIT/gen_demand.py" --scenario single --scale "$scale" -o "$d/flows.xml"
      if [ "$name" = L1 ]; then
        cat >"$d/extra.add.xml" <<'ADD'
<additional>
  <rerouter id="closure" edges="top0A0 top0A0.240.00">
    <interval begin="1200" end="2400"><closingLaneReroute id="top0A0.240.00_1" disallow="all"/></interval>
  </rerouter>
</additional>
ADD
        finish "$d" L1 3600 "one intersection, D1's demand x1.3, north approach's inner through lane closed 1200-2400 s"
      else
        finish "$d" "$name" 3600 "one intersection, D1's time-varying demand x$scale (peak)"
      fi ;;
    C1|C2|C3|C4)
      local scale
      case $name in C1) scale=1.0 ;; C2) scale=1.4 ;; C3) scale=1.8 ;; C4) scale=2.2 ;; esac
      for T in $TYPES; do grid_net "$d/net_$T.net.xml" "$T" 3 1 250 100 200 A0,B0,C0; done
      python3 "$KIT/gen_demand.py" --scenario corridor --n 3 --scale "$scale" -o "$d/flows.xml"
      finish "$d" "$name" 3600 "3-signal corridor, D2's demand x$scale (peak)" -u -g 7 --min-cycle 70 ;;
    G1|G2)
      local scale
      case $name in G1) scale=1.0 ;; G2) scale=1.5 ;; esac
      for T in $TYPES; do
        grid_net "$d/net_$T.net.xml" "$T" 3 3 200 200 200 A0,A1,A2,B0,B1,B2,C0,C1,C2
      done
      python3 "$ROOT/tests/py/grid_demand.py" --nx 3 --ny 3 --scale "$scale" -o "$d/flows.xml"
      finish "$d" "$name" 3600 "3x3 grid, tidal demand x$scale (peak)" -u -g 7 --min-cycle 70 ;;
    *) echo "tests/sumo-heldout.sh: unknown scenario $name (H1-H3, P1-P4, C1-C4, L1, G1, G2)" >&2; exit 2 ;;
  esac
}
for S in $SCENARIOS; do
  if [ "$REBUILD" = 1 ] || [ ! -f "$SCEN/$S/scenario.sumocfg" ]; then
    build "$S"
    if [ "$REBUILD" = 1 ]; then rm -rf "${RES:?}/$S"; fi
  fi
  mkdir -p "$RES/$S"
  "$BIN" sumo import --net "$SCEN/$S/net_static.net.xml" -o "$SCEN/$S/citygate.toml" | tail -1
done

FAILED=0
if [ "$BASELINES" = 1 ]; then
  missing=()
  for S in $SCENARIOS; do
    for C in static actuated delay_based NEMA webster maxpressure-g5-lane maxpressure-g10-approach; do
      for N in $(seq "$a" "$b"); do
        [ -f "$RES/$S/${C}_s$N.json" ] || { missing+=("$SCEN/$S"); continue 3; }
      done
    done
  done
  if [ ${#missing[@]} -gt 0 ]; then
    python3 -c 'import libsumo' 2>/dev/null ||
      .venv-sumo/bin/pip install -q --disable-pip-version-check "libsumo==1.28.0"
    nice python3 "$KIT/baselines.py" "$RES" "${missing[@]}" --seeds "$SEEDS" --jobs "$JOBS" || FAILED=1
  fi
fi

jobs=()
for S in $SCENARIOS; do
  for N in $(seq "$a" "$b"); do jobs+=("$S $N"); done
done
run_one() {
  set -euo pipefail
  read -r S N <<<"$1"
  (cd "$SCEN/$S" && nice "$BIN" sumo --sumocfg scenario.sumocfg --config citygate.toml \
      --controller look_ahead --seed "$N" --progress-every 0 \
      --output-prefix "../../sumo-heldout-results/$S/${NAME}_s$N." >/dev/null)
  python3 "$KIT/score.py" --scenario "$SCEN/$S" --prefix "$RES/$S/${NAME}_s$N." \
    --controller "$NAME" --seed "$N" -o "$RES/$S/${NAME}_s$N.json" >/dev/null
  echo "$S $NAME seed $N: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('mean delay', d['mean_delay_s'], 's, p95', d['p95_delay_s'], 's, safety violations', d['safety_violations'], ', teleports', d['teleports'], ', unfinished', d['unfinished'])" "$RES/$S/${NAME}_s$N.json")"
}
export -f run_one
export BIN SCEN RES KIT NAME
printf '%s\n' "${jobs[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {} || FAILED=1
python3 "$KIT/compare.py" "$RES" || true
if [ "$FAILED" = 1 ]; then
  echo "tests/sumo-heldout.sh: a run failed (see above)" >&2
  exit 1
fi

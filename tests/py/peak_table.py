#!/usr/bin/env python3
"""The peak table of docs/bench/sumo-peak.md from tests/sumo-heldout.sh's results.

  tests/py/peak_table.py [--results target/sumo-heldout-results] [--controller citygate-look-ahead]
                         [--seeds 1-3] [--scenarios P1,P2,...]

Per scenario: the look-ahead's mean delay, p95 delay and throughput (means over the seeds, as
scored by the kit's score.py), the best kit baseline by mean delay, actuated control, and the
verdict against the bar: mean delay <= 0.90 x the best baseline, p95 no worse, throughput >=
0.99 x, zero safety violations, and mean delay no worse than actuated.
"""
import argparse
import json
import os
import statistics

BASELINES = ["static", "actuated", "delay_based", "NEMA", "webster",
             "maxpressure-g5-lane", "maxpressure-g10-approach"]


def load(res, scenario, controller, seeds):
    runs = []
    for n in seeds:
        p = os.path.join(res, scenario, "%s_s%d.json" % (controller, n))
        if not os.path.exists(p):
            return None
        runs.append(json.load(open(p)))
    return {
        "mean": statistics.mean(r["mean_delay_s"] for r in runs),
        "p95": statistics.mean(r["p95_delay_s"] for r in runs),
        "vph": statistics.mean(r["throughput_vph"] for r in runs),
        "unsafe": sum(r["safety_violations"] for r in runs),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="target/sumo-heldout-results")
    ap.add_argument("--controller", default="citygate-look-ahead")
    ap.add_argument("--seeds", default="1-3")
    ap.add_argument("--scenarios", default="P1,P2,P3,P4,C1,C2,C3,C4,L1,G1,G2")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.seeds.split("-"))
    seeds = range(lo, hi + 1)
    print("| scenario | look-ahead mean / p95 / veh/h | best baseline | its mean / p95 / veh/h "
          "| ratio | actuated mean / p95 | verdict |")
    print("|---|---|---|---|---|---|---|")
    for s in a.scenarios.split(","):
        m = load(a.results, s, a.controller, seeds)
        base = {c: load(a.results, s, c, seeds) for c in BASELINES}
        base = {c: v for c, v in base.items() if v}
        if not m or not base or "actuated" not in base:
            print("| %s | (no results) | | | | | |" % s)
            continue
        bc = min(base, key=lambda c: base[c]["mean"])
        b, act = base[bc], base["actuated"]
        misses = []
        if m["mean"] > 0.9 * b["mean"]:
            misses.append("mean")
        if m["p95"] > b["p95"]:
            misses.append("p95")
        if m["vph"] < 0.99 * b["vph"]:
            misses.append("throughput")
        if m["unsafe"]:
            misses.append("safety")
        if m["mean"] > act["mean"]:
            misses.append("worse than actuated")
        verdict = "meets the bar" if not misses else "misses: " + ", ".join(misses)
        print("| %s | %.1f / %.1f / %.0f | %s | %.1f / %.1f / %.0f | %.2f | %.1f / %.1f | %s |" % (
            s, m["mean"], m["p95"], m["vph"], bc, b["mean"], b["p95"], b["vph"],
            m["mean"] / b["mean"], act["mean"], act["p95"], verdict))


if __name__ == "__main__":
    main()

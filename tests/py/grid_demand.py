#!/usr/bin/env python3
"""Tidal demand for a netgenerate N x M grid (fringe nodes left<j>, right<j>, top<i>, bottom<i>).

Every fringe entry sends 70 % straight across and 15 % to each of two perpendicular exits; the
peak flows per entry are eastbound 700, westbound 250, southbound 400, northbound 200 veh/h
(a morning tide into the east and south), with the kit's time profile (0-900 s x0.6,
900-2700 s x1.0, 2700-3600 s x0.6). --scale multiplies everything. Departures are Bernoulli per
second, as in the kit's gen_demand.py.

  grid_demand.py --nx 3 --ny 3 --scale 1.0 -o flows.xml
"""
import argparse

PROFILE = [(0, 900, 0.6), (900, 2700, 1.0), (2700, 3600, 0.6)]
PEAK = {"east": 700, "west": 250, "south": 400, "north": 200}


def col(i):
    return chr(ord("A") + i)


def entries(nx, ny):
    """(direction, entry edge, straight exit edge, perpendicular exit edges) per fringe entry."""
    out = []
    for j in range(ny):
        first, last = "%s%d" % (col(0), j), "%s%d" % (col(nx - 1), j)
        mid = col(nx // 2)
        perp = ["%s%dtop%d" % (mid, ny - 1, nx // 2), "%s0bottom%d" % (mid, nx // 2)]
        out.append(("east", "left%d%s" % (j, first), "%sright%d" % (last, j), perp))
        out.append(("west", "right%d%s" % (j, last), "%sleft%d" % (first, j), perp))
    for i in range(nx):
        top, bottom = "%s%d" % (col(i), ny - 1), "%s0" % col(i)
        m = ny // 2
        perp = ["%s%dright%d" % (col(nx - 1), m, m), "%s%dleft%d" % (col(0), m, m)]
        out.append(("south", "top%d%s" % (i, top), "%sbottom%d" % (bottom, i), perp))
        out.append(("north", "bottom%d%s" % (i, bottom), "%stop%d" % (top, i), perp))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nx", type=int, default=3)
    ap.add_argument("--ny", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    lines = []
    for (b, e, f) in PROFILE:
        for d, src, straight, perp in entries(a.nx, a.ny):
            for k, (dst, share) in enumerate([(straight, 0.7), (perp[0], 0.15), (perp[1], 0.15)]):
                rate = PEAK[d] * share * f * a.scale / 3600.0
                lines.append('    <flow id="%s_%d_%d" from="%s" to="%s" begin="%d" end="%d" '
                             'probability="%.5f" departLane="best" departSpeed="max"/>'
                             % (src, k, b, src, dst, b, e, rate))
    with open(a.output, "w") as f:
        f.write('<routes>\n    <vType id="DEFAULT_VEHTYPE" sigma="0.5"/>\n')
        f.write("\n".join(sorted(lines, key=lambda s: int(s.split('begin="')[1].split('"')[0]))))
        f.write("\n</routes>\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Prints this directory's table from its JSON files:
  table.py [DIR]  (default: the directory of this script)
qQ-R-v5 / qQ-R-v311: pushring fan-out 1 x 1,000 at QoS Q with MQTT 5.0
and MQTT 3.1.1 clients, round R (each 3 runs). The ratio of a round is
the 5.0 median over the 3.1.1 median; every run of each level is listed
as min-max."""
import glob, json, os, statistics, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

def rates(path):
    r = json.load(open(path))["results"][0]
    return [x["deliveries_per_s"] for x in r["runs"]], r

def cpu(r):
    """server CPU µs per delivery, median over the runs"""
    return statistics.median(x["server_cpu_s"] / x["deliveries"] * 1e6 for x in r["runs"] if x.get("deliveries"))

def k(x):
    return f"{x/1000:.0f}k"

for q in (0, 1):
    print(f"fan-out 1 x 1,000, QoS {q}, deliveries/s: median (min-max) of 3 runs")
    print("| round | MQTT 3.1.1 | MQTT 5.0 | 5.0 / 3.1.1 | server CPU µs/delivery 3.1.1 | 5.0 |")
    print("|---|--:|--:|--:|--:|--:|")
    ratios, a311, a5, c311, c5 = [], [], [], [], []
    for f in sorted(glob.glob(os.path.join(d, f"q{q}-*-v5.json"))):
        g = f.replace("-v5.json", "-v311.json")
        if not os.path.exists(g):
            continue
        r5, res5 = rates(f)
        r3, res3 = rates(g)
        c311.append(cpu(res3))
        c5.append(cpu(res5))
        if not res5.get("mqtt5"):
            sys.exit(f"{f} was not an MQTT 5.0 run")
        a311 += r3
        a5 += r5
        ratio = statistics.median(r5) / statistics.median(r3)
        ratios.append(ratio)
        rnd = os.path.basename(f).split("-")[1]
        print(f"| {rnd} | {k(statistics.median(r3))} ({k(min(r3))}–{k(max(r3))}) | "
              f"{k(statistics.median(r5))} ({k(min(r5))}–{k(max(r5))}) | {ratio:.2f} | {c311[-1]:.2f} | {c5[-1]:.2f} |")
    if ratios:
        print(f"rounds: ratio median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}; "
              f"all runs: 3.1.1 {k(min(a311))}–{k(max(a311))}, 5.0 {k(min(a5))}–{k(max(a5))}; "
              f"CPU per delivery 5.0/3.1.1 median {statistics.median(b / a for a, b in zip(c311, c5)):.2f}\n")

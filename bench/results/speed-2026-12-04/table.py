#!/usr/bin/env python3
"""Prints this directory's tables from its JSON files:
  table.py [DIR]  (default: the directory of this script)
q1-R / q1p-R: pushring against mosquitto-persist in one invocation
(per-run ratios pair run n of each); q0-R-new / q0-R-old: the two builds'
direct QoS 0 invocations of round R, each against mosquitto."""
import glob, json, os, statistics, sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

def load(path):
    out = {}
    for r in json.load(open(path))["results"]:
        out[r["system"]] = r
    return out

def rates(r):
    return [x["deliveries_per_s"] for x in r["runs"]]

def k(x):
    return f"{x/1000:.1f}k"

def span(xs):
    return f"{k(statistics.median(xs))} ({k(min(xs))}–{k(max(xs))})"

for prefix, label in (("q1", "clean sessions"), ("q1p", "persistent sessions")):
    files = sorted(glob.glob(os.path.join(d, prefix + "-[0-9]*.json")))
    print(f"direct 2,000 x 4 QoS 1, {label}")
    print("| invocation | pushring deliveries/s | mosquitto-persist | per-run ratios | median ratio | pushring CPU µs/delivery | mosquitto CPU µs/delivery | position writes per delivery |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    allr = []
    for f in files:
        s = load(f)
        p, m = s["pushring"], s["mosquitto-persist"]
        pr, mr = rates(p), rates(m)
        ratios = [a / b for a, b in zip(pr, mr)]
        allr += ratios
        cpu = lambda r: statistics.median(x["server_cpu_s"] / x["deliveries"] * 1e6 for x in r["runs"])
        w = statistics.median(x.get("record_writes_per_delivery", 0) for x in p["runs"])
        print(f"| {os.path.basename(f)[:-5]} | {span(pr)} | {span(mr)} | {min(ratios):.2f}–{max(ratios):.2f} | "
              f"{statistics.median(ratios):.2f} | {cpu(p):.0f} | {cpu(m):.0f} | {w:.4f} |")
    if allr:
        print(f"all {len(allr)} runs: ratio median {statistics.median(allr):.2f}, min {min(allr):.2f}, max {max(allr):.2f}\n")

print("direct 2,000 x 4 QoS 0, this build (new) against d0cc1e6 (old)")
print("| round | new pushring | old pushring | new/old (medians) | mosquitto beside new | beside old | pushring/mosquitto new | old |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
news, olds, nm, om = [], [], [], []
for f in sorted(glob.glob(os.path.join(d, "q0-*-new.json"))):
    g = f.replace("-new.json", "-old.json")
    if not os.path.exists(g):
        continue
    n, o = load(f), load(g)
    a, b = rates(n["pushring"]), rates(o["pushring"])
    ma, mb = rates(n["mosquitto"]), rates(o["mosquitto"])
    news += a; olds += b; nm += [x / y for x, y in zip(a, ma)]; om += [x / y for x, y in zip(b, mb)]
    print(f"| {os.path.basename(f)[3:-9]} | {span(a)} | {span(b)} | {statistics.median(a)/statistics.median(b):.2f} | "
          f"{span(ma)} | {span(mb)} | {statistics.median(a)/statistics.median(ma):.2f} | {statistics.median(b)/statistics.median(mb):.2f} |")
if news:
    print(f"all runs: new {span(news)}, old {span(olds)}, new/old of medians {statistics.median(news)/statistics.median(olds):.2f}; "
          f"pushring/mosquitto per run: new {statistics.median(nm):.2f} ({min(nm):.2f}–{max(nm):.2f}), old {statistics.median(om):.2f} ({min(om):.2f}–{max(om):.2f})")

#!/usr/bin/env python3
"""Prints the durable suite's tables (markdown) from its JSON files:
ratios of pushring over each baseline (median, and min/max of the
per-run ratios by run number), and the QoS 0 entries against a previous
suite's."""
import json, sys, os

out, prev = sys.argv[1], sys.argv[2]

def load(d, e):
    p = os.path.join(d, e + ".json")
    if not os.path.exists(p):
        return None
    return {x["system"]: x for x in json.load(open(p))["results"]}

def runs(x):
    return {r["run"]: r for r in x.get("runs", []) if not r.get("error")}

def mm(x):
    v = [y["deliveries_per_s"] for y in x.get("runs", []) if not y.get("error")]
    return f"{k(min(v))}–{k(max(v))}" if v else "-"

def k(v):
    return f"{v/1000:,.0f}k" if v >= 10000 else f"{v:,.0f}"

print("| entry | pushring deliv/s median (min–max) | baseline | its deliv/s median (min–max) | pushring/baseline of medians | min–max of per-run ratios (same run) | lost pushring / baseline |")
print("|---|--:|---|--:|--:|--:|--:|")
for e in ["fanout-qos1-max", "direct-qos1-max", "fanout-qos0-max", "direct-qos0-max", "fanout-burst-qos0"]:
    r = load(out, e)
    if not r:
        continue
    p = r.get("pushring")
    for b in ["mosquitto", "mosquitto-persist", "nats"]:
        x = r.get(b)
        if not x:
            continue
        if x.get("error") or not x.get("deliveries_per_s"):
            print(f"| {e} | | {b} | failed: {x.get('error','')[:80]} | | | |")
            continue
        pr, xr = runs(p), runs(x)
        per = [pr[i]["deliveries_per_s"] / xr[i]["deliveries_per_s"] for i in pr if i in xr and xr[i]["deliveries_per_s"] > 0]
        rng = f"{min(per):.2f}–{max(per):.2f}" if per else "-"
        print(f"| {e} | {k(p['deliveries_per_s'])} ({mm(p)}) | {b} | "
              f"{k(x['deliveries_per_s'])} ({mm(x)}) | "
              f"{p['deliveries_per_s']/x['deliveries_per_s']:.2f} | {rng} | {p['lost']:,} / {x['lost']:,} |")

print()
print("| entry | system | this suite median (min–max) | previous median (min–max) | this/previous | pushring/mosquitto now / before |")
print("|---|---|--:|--:|--:|--:|")
for e in ["fanout-qos0-max", "direct-qos0-max"]:
    r, q = load(out, e), load(prev, e)
    if not r or not q:
        continue
    for s in ["pushring", "mosquitto", "nats"]:
        a, b = r.get(s), q.get(s)
        if not a or not b or not b.get("deliveries_per_s"):
            continue
        rel = ""
        if s == "pushring":
            rel = f"{a['deliveries_per_s']/r['mosquitto']['deliveries_per_s']:.2f} / {b['deliveries_per_s']/q['mosquitto']['deliveries_per_s']:.2f}"
        print(f"| {e} | {s} | {k(a['deliveries_per_s'])} ({mm(a)}) | {k(b['deliveries_per_s'])} ({mm(b)}) | {a['deliveries_per_s']/b['deliveries_per_s']:.2f} | {rel} |")

print()
for e in ["fanout-qos1-max", "direct-qos1-max", "fanout-qos0-max", "direct-qos0-max", "fanout-burst-qos0"]:
    r = load(out, e)
    if not r or "pushring" not in r:
        continue
    p = r["pushring"]
    per = [(y.get("stored_per_publish"), y.get("stored_bytes_per_publish"), y.get("store_errors"), y.get("record_writes_per_delivery")) for y in p.get("runs", [])]
    print(f"{e}: journal per run (stored/publish, bytes/publish, store errors, record writes/delivery): {per}")

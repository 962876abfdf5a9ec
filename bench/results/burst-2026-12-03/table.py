#!/usr/bin/env python3
"""table.py DIR: per-run rows of an ab.sh directory (or of a pushbench
--runs JSON file): deliveries/s, burst, server and harness CPU, server
write calls and harness read calls, and pushring/nats per run."""
import glob, json, re, statistics as st, sys

def rows(path):
    out = {}
    if path.endswith('.json'):
        for r in json.load(open(path))['results']:
            for x in r.get('runs', [r]):
                out.setdefault(r['system'], []).append((x.get('run', 1), x, '-'))
        return out
    for f in sorted(glob.glob(path + '/*.json')):
        name, i = re.match(r'.*/(.+)-(\d+)\.json', f).groups()
        try:
            load = open(f[:-5] + '.load').read().strip()
        except OSError:
            load = '-'
        for x in json.load(open(f))['results']:
            key = name if x['system'] == 'pushring' else x['system'] + '@' + name
            out.setdefault(key, []).append((int(i), x, load))
    return out

data = rows(sys.argv[1])
for k in sorted(data):
    v = sorted(data[k], key=lambda t: t[0])
    dps = [x['deliveries_per_s'] / 1e3 for _, x, _ in v]
    cpu = [(x.get('server_cpu_s') or 0) + x['harness_cpu_s'] for _, x, _ in v]
    print(f"{k}: deliveries/s median {st.median(dps):.0f}k, {min(dps):.0f}k-{max(dps):.0f}k (max/min {max(dps)/min(dps):.2f}); "
          f"server+harness CPU {min(cpu):.2f}-{max(cpu):.2f} s (max/min {max(cpu)/min(cpu):.2f})")
    print("  run  deliv/s  burst_s  srv_cpu  harn_cpu  srv_writes  harn_reads  lost  load  vs_nats")
    nats = {i: x for i, x, _ in data.get('nats@' + k, [])} if not k.startswith('nats') else {}
    for i, x, load in v:
        ratio = ''
        if i in nats:
            ratio = f"{x['deliveries_per_s'] / nats[i]['deliveries_per_s']:.2f}"
        print(f"  {i:3d} {x['deliveries_per_s']/1e3:7.0f}k {x.get('burst_s') or 0:8.3f} {x.get('server_cpu_s') or 0:8.2f} "
              f"{x['harness_cpu_s']:9.2f} {x.get('server_write_calls') or 0:11.0f} {x.get('harness_read_calls') or 0:11.0f} "
              f"{x['lost']:5d} {load:>5} {ratio:>8}")

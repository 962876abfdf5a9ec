#!/bin/bash
# Alternating single-run bursts, one pushbench invocation per run and
# variant, the order reversed every other round (how the ab-* directories
# here were made):
#
#   EXTRA="--baseline nats" ab.sh OUT ROUNDS "name:ENV=val:/path/to/pushring:--node-flags" ...
#
# e.g. EXTRA="--baseline nats" ab.sh out 6 "off::bin/pushring:--output-batch 1" "hold64::bin/pushring:--output-batch 64"
# Each run writes OUT/<name>-<round>.json and the 1-minute load average
# after it to OUT/<name>-<round>.load. PUSHBENCH defaults to bin/pushbench.
out=$1; n=$2; shift 2
mkdir -p "$out"
vars=("$@")
for i in $(seq 1 "$n"); do
  order=("${vars[@]}")
  if [ $((i % 2)) = 0 ]; then order=(); for ((k=${#vars[@]}-1;k>=0;k--)); do order+=("${vars[$k]}"); done; fi
  for v in "${order[@]}"; do
    IFS=: read -r name envs bin pargs <<< "$v"
    echo "$(date +%T) run $i $name load $(cut -d' ' -f1 /proc/loadavg)" >&2
    env $envs "${PUSHBENCH:-bin/pushbench}" --quiet --start-pushring "$bin" --pushring-args "$pargs" \
      --scenario fanout --groups 1 --members 1000 --devices 1 --qos 0 --messages 500 --runs 1 --payload 64 --drain 10s \
      $EXTRA --json "$out/$name-$i.json" > /dev/null 2>>"$out/err.txt"
    cut -d' ' -f1 /proc/loadavg > "$out/$name-$i.load"
  done
done

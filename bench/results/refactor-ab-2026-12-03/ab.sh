#!/usr/bin/env bash
# The A/B of this directory: the two fan-out entries of bench/suite.sh,
# four times alternating between two builds (each a directory with bin/
# holding pushring and pushbench, e.g. `git worktree add /tmp/old dd8cee1
# && (cd /tmp/old && go build -o bin/ ./cmd/... ./bench/cmd/...)`).
#   ab.sh NEW_DIR OLD_DIR [OUT]
set -euo pipefail
new=$1 old=$2
cd "$(dirname "$0")/../../.."
out=${3:-bench/results/ab-$(date -u +%Y-%m-%d)}
mkdir -p "$out"
i=0
for b in new old new old; do
  i=$((i+1))
  dir=$new; [ $b = old ] && dir=$old
  if BIN=$dir/bin ONLY="fanout-qos0-max fanout-qos1-max" bench/suite.sh "$out/$i-$b" > "$out/$i-$b.log" 2>&1; then
    echo "run $i $b: ok"
  else
    echo "run $i $b: FAILED (see $out/$i-$b.log)"
  fi
done

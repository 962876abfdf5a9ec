#!/bin/bash
# pushring under the harness, instrumented: gctrace to runs/<n>.gc, and
# (TRACE=1) a runtime trace of TRACE_S s from when all 1,001 clients are
# connected; SIGTERM is held back until the trace is written.
dir=/tmp/bu/runs
n=$(date +%H%M%S%N | cut -c1-9)
http=""
args=("$@")
for ((i=0;i<${#args[@]};i++)); do [ "${args[$i]}" = "--http-addr" ] && http=${args[$((i+1))]}; done
echo "$n" >> $dir/nodes
export GODEBUG=gctrace=1
${BIN:-/tmp/bu/pushring} "$@" --pprof-addr 127.0.0.1:6061 2> >(while IFS= read -r l; do echo "$(date +%s.%N) $l"; done > $dir/$n.gc) &
child=$!
tracer=
if [ "${TRACE:-0}" = 1 ]; then
 (
  for k in $(seq 1 3000); do
    c=$(curl -s "http://$http/metrics" 2>/dev/null | awk '/^pushring_mqtt_connections /{print $2}')
    [ -n "$c" ] && [ "${c%.*}" -ge 1001 ] && break
    sleep 0.02
  done
  if [ "${PROF:-0}" = 1 ]; then curl -s "http://127.0.0.1:6061/debug/pprof/profile?seconds=${TRACE_S:-3}" > $dir/$n.prof; else curl -s "http://127.0.0.1:6061/debug/pprof/trace?seconds=${TRACE_S:-3}" > $dir/$n.trace; fi
 ) &
 tracer=$!
fi
trap '[ -n "$tracer" ] && wait $tracer; kill -TERM $child' TERM
wait $child; wait $child

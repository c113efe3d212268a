#!/usr/bin/env bash
# hack/bench/run.sh — compare ilpfleet's connector with the JavaScript ilp-connector.
#
# For each connector implementation × topology × concurrency it starts fresh connectors on
# 127.0.0.1, drives them with `ilpfleet loadgen` over BTP, samples the peak RSS (VmHWM) of every
# connector process, kills them, and finally prints a Markdown table (also written to
# $BENCH_OUT). Both implementations get the same CONNECTOR_* configuration: spread 0,
# one-to-one backend, memory store, balance middleware on with wide limits, rateLimit raised
# on every account.
#
#   topology single:  loadgen ─BTP→ [A: sender, receiver] ─BTP→ loadgen
#   topology line:    loadgen ─BTP→ [A: sender, b] ─BTP peer link→ [B: a, receiver] ─BTP→ loadgen
#
# Knobs (environment): BENCH_N (20000 measured packets per run), BENCH_WARMUP (2000),
# BENCH_CONCURRENCY ("1 10 100"), BENCH_IMPLS ("js ilpfleet"), BENCH_TOPOLOGIES ("single line"),
# BENCH_PORT_BASE (17400), BENCH_OUT (bin/bench/results-<UTC time>.md),
# ILPFLEET_BIN (use this binary instead of building bin/ilpfleet).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
N="${BENCH_N:-20000}"
WARMUP="${BENCH_WARMUP:-2000}"
CONCURRENCY="${BENCH_CONCURRENCY:-1 10 100}"
IMPLS="${BENCH_IMPLS:-js ilpfleet}"
TOPOLOGIES="${BENCH_TOPOLOGIES:-single line}"
PORT="${BENCH_PORT_BASE:-17400}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="${BENCH_OUT:-$ROOT/bin/bench/results-$STAMP.md}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ilpfleet-bench.XXXXXX")"
LOGS="$(dirname "$OUT")/logs-$STAMP" # connector logs and loadgen JSON of every run
CELL=""
JS_CONNECTOR="$HERE/node_modules/ilp-connector/dist/index.js"
LIMIT="1000000000000000" # balance limits and rate-limit buckets far beyond any run

PIDS=()
log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# stop_pid ends one process we started: TERM, then KILL after 3 s.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------------------
command -v jq >/dev/null || die "jq is required"
command -v node >/dev/null || die "node is required (the JS connector)"
if [[ -z "${ILPFLEET_BIN:-}" ]]; then
  log "building bin/ilpfleet"
  (cd "$ROOT" && go build -o bin/ilpfleet .)
  ILPFLEET_BIN="$ROOT/bin/ilpfleet"
fi
"$ILPFLEET_BIN" loadgen -h >/dev/null 2>&1 || die "$ILPFLEET_BIN has no loadgen command"
if [[ "$(jq -r .version "$HERE/node_modules/ilp-connector/package.json" 2>/dev/null)" != "23.0.2" ||
      ! -f "$HERE/node_modules/ilp-plugin-btp/package.json" ]]; then
  log "installing ilp-connector and ilp-plugin-btp (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# --- configuration -----------------------------------------------------------------------
# account_json RELATION OPTIONS_JSON: one CONNECTOR_ACCOUNTS entry, as every account here is.
account_json() {
  jq -nc --arg rel "$1" --argjson opts "$2" --arg lim "$LIMIT" '{
    relation: $rel, plugin: "ilp-plugin-btp", assetCode: "USD", assetScale: 9,
    options: $opts,
    balance: {minimum: ("-" + $lim), maximum: $lim},
    rateLimit: {refillPeriod: 1000, refillCount: ($lim | tonumber), capacity: ($lim | tonumber)}
  }'
}
listener() { jq -nc --argjson port "$1" --arg secret "$2" '{listener: {port: $port, secret: $secret}}'; }
client() { jq -nc --arg url "$1" '{server: $url}'; }

# start_connector IMPL NAME ADDRESS ACCOUNTS_JSON ROUTES_JSON: starts one connector in the
# background and records its PID in PIDS and in $WORK/NAME.pid.
start_connector() {
  local impl=$1 name=$2 address=$3 accounts=$4 routes=$5
  local -a cmd
  case $impl in
    js) cmd=(node "$JS_CONNECTOR") ;;
    ilpfleet) cmd=("$ILPFLEET_BIN" connector) ;;
    *) die "unknown implementation $impl" ;;
  esac
  env CONNECTOR_ENV=test CONNECTOR_ILP_ADDRESS="$address" CONNECTOR_BACKEND=one-to-one \
    CONNECTOR_SPREAD=0 CONNECTOR_STORE=memory CONNECTOR_ACCOUNTS="$accounts" \
    CONNECTOR_ROUTES="$routes" CONNECTOR_ADMIN_API=false DEBUG= \
    "${cmd[@]}" >"$LOGS/$CELL-$name.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$WORK/$name.pid"
}

# wait_port PORT NAME: until something listens on 127.0.0.1:PORT, or the connector died.
wait_port() {
  local port=$1 name=$2 i
  for i in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$(cat "$WORK/$name.pid")" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# topology_start IMPL TOPOLOGY: starts the connectors and sets DEST, the loadgen's destination.
# (Not run in a subshell: PIDS must reach stop_all.)
topology_start() {
  local impl=$1 topo=$2
  local ps=$PORT pr=$((PORT + 1)) pl=$((PORT + 2))
  case $topo in
    single)
      start_connector "$impl" a test.a "$(jq -nc \
        --argjson s "$(account_json child "$(listener $ps sender-secret)")" \
        --argjson r "$(account_json child "$(listener $pr receiver-secret)")" \
        '{sender: $s, receiver: $r}')" '[]'
      wait_port $ps a && wait_port $pr a || return 1
      DEST=test.a.receiver ;;
    line)
      start_connector "$impl" b test.b "$(jq -nc \
        --argjson a "$(account_json peer "$(listener $pl link-secret)")" \
        --argjson r "$(account_json child "$(listener $pr receiver-secret)")" \
        '{a: $a, receiver: $r}')" '[]'
      wait_port $pl b && wait_port $pr b || return 1
      start_connector "$impl" a test.a "$(jq -nc \
        --argjson s "$(account_json child "$(listener $ps sender-secret)")" \
        --argjson b "$(account_json peer "$(client "btp+ws://a:link-secret@127.0.0.1:$pl")")" \
        '{sender: $s, b: $b}')" '[{"targetPrefix":"test.b","peerId":"b"}]'
      wait_port $ps a || return 1
      DEST=test.b.receiver ;;
    *) die "unknown topology $topo" ;;
  esac
}

loadgen() {
  "$ILPFLEET_BIN" loadgen -sender "btp+ws://lg:sender-secret@127.0.0.1:$PORT" \
    -receiver "btp+ws://lg:receiver-secret@127.0.0.1:$((PORT + 1))" "$@"
}

# ready DESTINATION: until one packet goes through end to end (links and routes are up).
ready() {
  local i
  for i in $(seq 40); do
    loadgen -destination "$1" -n 1 -c 1 -warmup 0 -timeout 5s -expiry 4s >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}

# peak_rss_mb NAME: VmHWM of the connector process, in MB.
peak_rss_mb() {
  local pid kb
  pid="$(cat "$WORK/$1.pid" 2>/dev/null)" || { echo "?"; return; }
  kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
  [[ -n "$kb" ]] && echo $((kb / 1024)) || echo "?"
}

# --- the matrix --------------------------------------------------------------------------
mkdir -p "$LOGS"
ROWS="$WORK/rows.tsv"
: >"$ROWS"
# run_cell IMPL TOPOLOGY CONCURRENCY [ATTEMPT]: one row of the table, on fresh connectors.
run_cell() {
  local impl=$1 topo=$2 c=$3 attempt=${4:-1} rss json status=ok names=a n died=""
  [[ $topo == line ]] && names="a b"
  CELL="$impl-$topo-c$c"
  ((attempt == 1)) || CELL+="-attempt$attempt"
  log "$CELL"
  DEST=""
  if ! topology_start "$impl" "$topo"; then
    log "  $impl did not start; last log lines:"; tail -n 5 "$LOGS/$CELL"-*.log >&2 || true
    printf '%s\t%s\t%s\tnot available (did not start)\n' "$impl" "$topo" "$c" >>"$ROWS"
    stop_all; return
  fi
  if ! ready "$DEST"; then
    log "  no packet got through; last log lines:"; tail -n 5 "$LOGS/$CELL"-*.log >&2 || true
    printf '%s\t%s\t%s\tnot available (no packet forwarded)\n' "$impl" "$topo" "$c" >>"$ROWS"
    stop_all; return
  fi
  json="$(loadgen -destination "$DEST" -n "$N" -c "$c" -warmup "$WARMUP" -timeout 10m -json)" || status=incomplete
  rss=""
  for n in $names; do
    rss+="$(peak_rss_mb "$n") "
    kill -0 "$(cat "$WORK/$n.pid")" 2>/dev/null || died+="$n "
  done
  stop_all
  echo "$json" >"$LOGS/$CELL.json"
  # Spread 0 on every hop: the receiver must get exactly what the sender had fulfilled.
  if [[ -n "$json" ]] && ! jq -e '.received_amount == .amount_fulfilled' >/dev/null <<<"$json"; then
    [[ $status == ok ]] && status="amount received ≠ amount sent" || status+="; amount received ≠ amount sent"
  fi
  if [[ -n "$died" ]]; then
    # A connector that vanished mid-run (crash, OOM, or a stray kill on a shared machine)
    # invalidates the row: say so, and try once more.
    log "  connector process(es) ${died}died during the run (attempt $attempt); last log lines:"
    tail -n 5 "$LOGS/$CELL"-*.log >&2 || true
    if ((attempt < 2)); then run_cell "$impl" "$topo" "$c" $((attempt + 1)); return; fi
    status="incomplete: connector ${died% } died"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$impl" "$topo" "$c" "$status" "${rss% }" "$json" >>"$ROWS"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
log "N=$N warmup=$WARMUP; $(nproc) CPUs; load average: $LOAD_BEFORE"
for impl in $IMPLS; do
  for topo in $TOPOLOGIES; do
    for c in $CONCURRENCY; do run_cell "$impl" "$topo" "$c"; done
  done
done

# --- report ------------------------------------------------------------------------------
report() {
  echo "| connector | topology | concurrency | packets/s | p50 ms | p99 ms | p99.9 ms | fulfilled | rejected | peak RSS MB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  local impl topo c status rss json name
  while IFS=$'\t' read -r impl topo c status rss json; do
    case $impl in js) name="ilp-connector 23.0.2 (JS)" ;; *) name="ilpfleet" ;; esac
    case $topo in single) topo="one connector" ;; line) topo="two, A→B" ;; esac
    if [[ -z "$json" ]]; then
      echo "| $name | $topo | $c | $status | | | | | | |"
      continue
    fi
    jq -r --arg name "$name" --arg topo "$topo" --arg rss "${rss// / \/ }" --arg status "$status" '
      def r(x): (x * 100 | round) / 100;
      "| \($name) | \($topo) | \(.concurrency) | \(.fulfilled_per_second | round)" +
      (if $status == "ok" then "" else " (\($status))" end) +
      " | \(r(.latency_ms.p50)) | \(r(.latency_ms.p99)) | \(r(.latency_ms.p999)) | \(.fulfilled) | " +
      "\([.rejected[]] | add // 0) | \($rss) |"' <<<"$json"
  done <"$ROWS"
  echo
  echo "N = $N packets after $WARMUP warmup packets, amount 1, BTP on 127.0.0.1; packets/s counts fulfilled packets;"
  echo "latency of fulfilled packets (loadgen send → fulfill); peak RSS = VmHWM of each connector process (A / B)."
  echo "Run at $STAMP on $(nproc) CPUs, load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
}
report | tee "$OUT"
log "results written to $OUT (logs in $LOGS)"

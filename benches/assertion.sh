#!/usr/bin/env bash
# The signed assertion's cost: authenticated proxying with `[assertion] enabled = true`
# against the same proxy without it, in one run on 127.0.0.1.
#
# usage: bash benches/assertion.sh [seconds=10] [connections=64] [rounds=2]
# env:   BENCH_REQUESTS=2000  sequential keep-alive requests counted under callgrind
#        BENCH_WARMUP=50      requests sent before counting starts
#        BENCH_CALLGRIND=1    0 skips the instruction counts
# Needs: nginx, wrk, curl, python3, valgrind (callgrind_control), timeout.
#
# Both proxies forward to nginx `return 200` with the same logged-in cookie session; the only
# difference is the assertion (generated ES256 key, default ttl 60 s, so a token is re-signed
# once per session every 30 s and reused in between). Printed:
#  - wrk req/s and p50/p99 for off and on, `rounds` times alternating (off, on, off, on …) so
#    that drift in the machine's load hits both alike; the ratio on/off of the summed req/s.
#  - callgrind instructions and malloc calls per request for each (the stable figure on a busy
#    machine): BENCH_REQUESTS sequential requests after BENCH_WARMUP, counters zeroed in between.
# Every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
rounds=${3:-2}
N=${BENCH_REQUESTS:-2000}
WARM=${BENCH_WARMUP:-50}
CG=${BENCH_CALLGRIND:-1}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
for b in nginx wrk curl python3 timeout; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "missing tool: $b"
done
if [ "$CG" = 1 ]; then command -v callgrind_control >/dev/null 2>&1 || die "missing valgrind"; fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d /tmp/dap-assert-bench.XXXXXX)
pids=()
start_bg() { local name=$1; shift; "$@" > "$work/$name.log" 2>&1 & last_pid=$!; pids+=("$last_pid"); }
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  if [ $rc -ne 0 ]; then for f in "$work"/*.log; do [ -s "$f" ] && { echo "== $f" >&2; tail -n 5 "$f" >&2; }; done; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  local i
  for ((i = 0; i < ${2:-10} * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "port $1 never opened"
}

say "building (cargo build --release, example fake_dingtalk)"
cargo build --release --quiet
cargo build --release --quiet --example fake_dingtalk
bin=target/release/dingtalk-auth-proxy

up=$(free_port); off=$(free_port); on=$(free_port)
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
cat > "$work/nginx.conf" <<NGINX
$user
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server { listen 127.0.0.1:$up; location / { return 200 "ok\n"; } }
}
NGINX
start_bg nginx "$nginx_bin" -p "$work" -c "$work/nginx.conf" -g 'daemon off;'
start_bg fake target/release/examples/fake_dingtalk
for _ in $(seq 1 200); do grep -q listening "$work/fake.log" 2>/dev/null && break; sleep 0.05; done
fake=$(sed -n 's/^fake dingtalk listening on //p' "$work/fake.log")
[ -n "$fake" ] || die "fake DingTalk did not start"
env_common=(
  DAP_DINGTALK__APP_KEY=dingfakeappkey DAP_DINGTALK__APP_SECRET=fake-app-secret-0123456789
  DAP_DINGTALK__CORP_ID=dingfakecorp DAP_DINGTALK__API_BASE="$fake" DAP_DINGTALK__NEW_API_BASE="$fake"
  DAP_DINGTALK__LOGIN_BASE="$fake" DAP_DINGTALK__JSAPI_URL="$fake/dingtalk.open.js"
  DAP_SESSION__SECRET=bench-session-secret-0123456789abcdef RUST_LOG=warn
  DAP_UPSTREAM="http://127.0.0.1:$up"
)
env_on=(DAP_ASSERTION__ENABLED=true)
start_bg off env "${env_common[@]}" DAP_LISTEN="127.0.0.1:$off" "$bin"
start_bg on env "${env_common[@]}" "${env_on[@]}" DAP_LISTEN="127.0.0.1:$on" "$bin"
for p in "$up" "$off" "$on"; do wait_port "$p"; done

ua="Mozilla/5.0 AliApp(DingTalk/7.6.0)"
jar="$work/jar"
page=$(curl -s --max-time 10 -c "$jar" -A "$ua" "http://127.0.0.1:$off/_auth/login?rd=%2F")
state=$(printf '%s' "$page" | sed -n 's/.*"state":"\([^"]*\)".*/\1/p')
code=$(curl -s --max-time 10 "$fake/_fake/mint?userid=zhangsan")
curl -s --max-time 10 -b "$jar" -c "$jar" -o /dev/null "http://127.0.0.1:$off/_auth/callback?code=$code&state=$state"
session=$(awk '$6=="dap_session"{print $7}' "$jar")
[ -n "$session" ] || die "login failed"
cookie="Cookie: dap_session=$session"
# Same secret: the one cookie opens on both proxies.
hdr=$(curl -s --max-time 10 -o /dev/null -D - -H "$cookie" "http://127.0.0.1:$on/" | tr -d '\r')
printf '%s' "$hdr" | grep -q '^HTTP/1.1 200' || die "the assertion proxy does not pass the session"

# ---- wrk, alternating -----------------------------------------------------------------------
declare -A total=([off]=0 [on]=0)
for ((r = 1; r <= rounds; r++)); do
  for which in off on; do
    port=${!which}
    f="$work/wrk.$which.$r.txt"
    timeout $((secs + 60)) wrk -t2 -c"$conns" -d"${secs}s" --timeout 10s --latency -H "$cookie" "http://127.0.0.1:$port/" > "$f" \
      || die "wrk failed: $(cat "$f")"
    read -r rps p50 p99 non2xx errs < <(python3 benches/bench_report.py wrk "$f")
    [ "$non2xx" = 0 ] || die "wrk $which: $non2xx non-2xx answers"
    total[$which]=$(python3 -c "print(${total[$which]} + $rps)")
    say "$(printf 'wrk round %d  assertion %-3s %9s req/s  p50 %sms  p99 %sms' "$r" "$which" "$rps" "$p50" "$p99")"
  done
done
ratio=$(python3 -c "print(f'{${total[on]} / ${total[off]}:.3f}')")

# ---- callgrind ------------------------------------------------------------------------------
declare -A ir mallocs
if [ "$CG" = 1 ]; then
  for which in off on; do
    p=$(free_port)
    vars=("${env_common[@]}" DAP_LISTEN="127.0.0.1:$p")
    [ "$which" = on ] && vars+=("${env_on[@]}")
    start_bg "cg_$which" env "${vars[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.$which" "$bin"
    cg_pid=$last_pid
    wait_port "$p" 180
    timeout 900 python3 benches/bench_client.py seq "$p" / "$WARM" 200 "$cookie" || die "warm-up failed"
    timeout 120 callgrind_control -z "$cg_pid" > /dev/null 2>&1 || die "callgrind_control -z failed"
    timeout 900 python3 benches/bench_client.py seq "$p" / "$N" 200 "$cookie" || die "requests failed"
    timeout 120 callgrind_control -d "$cg_pid" > /dev/null 2>&1 || die "callgrind_control -d failed"
    for ((i = 0; i < 600; i++)); do [ -s "$work/cg.$which.1" ] && break; sleep 0.1; done
    sleep 0.2
    read -r ir[$which] mallocs[$which] < <(python3 benches/bench_report.py cg "$work/cg.$which.1")
    say "$(printf 'callgrind assertion %-3s %9d instructions/request  %.2f malloc/request' "$which" $((ir[$which] / N)) "$(python3 -c "print(${mallocs[$which]}/$N)")")"
    stop_pid "$cg_pid"
  done
fi

echo "assertion bench: $rounds x ${secs}s wrk rounds per side, $conns connections, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk req/s   off $(python3 -c "print(round(${total[off]} / $rounds))")   on $(python3 -c "print(round(${total[on]} / $rounds))")   on/off $ratio"
if [ "$CG" = 1 ]; then
  echo "instr/req   off $((ir[off] / N))   on $((ir[on] / N))   on/off $(python3 -c "print(f'{${ir[on]} / ${ir[off]}:.3f}')")"
  echo "malloc/req  off $(python3 -c "print(round(${mallocs[off]}/$N, 2))")   on $(python3 -c "print(round(${mallocs[on]}/$N, 2))")"
fi

#!/usr/bin/env bash
# Proxy overhead against nginx, all measured in one run on 127.0.0.1.
#
# usage: bash benches/proxy.sh [seconds=10] [connections]
#   seconds:     per wrk run (wrk -t2, or -t1 at 1 connection).
#   connections: one connection count for every wrk run; overrides BENCH_CONNS.
#   On a busy machine prefix `nice -n 10`.
# env:   BENCH_CONNS="64 256"   wrk connection counts (space-separated); every scenario runs at each
#        BENCH_ROUNDS=3         wrk rounds; the figures are medians over the rounds
#        BENCH_REQUESTS=2000    fixed request count for the instruction and syscall counts
#        BENCH_WARMUP=50        requests sent before counting starts (pools, lazy init)
#        BENCH_IDLE_CONNS=10000 idle keep-alive connections for the memory figure (0: skip)
#        BENCH_CALLGRIND=1      0 skips section 2 (the slowest part: the processes run under valgrind)
#        BENCH_OUT=target/bench where the JSON goes
#   Section 1 takes 7 scenarios x connection counts x rounds x (seconds + ~1 s): with the
#   defaults 42 runs, about 8 minutes. A quick smoke run:
#     BENCH_CALLGRIND=0 BENCH_IDLE_CONNS=0 BENCH_ROUNDS=2 BENCH_CONNS="16 32" bash benches/proxy.sh 1
# Needs: nginx (with auth_request: nginx-light or fuller), wrk, curl, python3, redis-server,
#        redis-cli, valgrind (callgrind_control), strace, timeout
#        (apt-get install -y nginx-light wrk curl redis-server valgrind strace).
# It builds `cargo build --release` and the fake_dingtalk example, starts everything on free
# 127.0.0.1 ports, and on exit (normal, error or Ctrl-C) stops every process it started.
# Helpers: benches/bench_client.py (bounded HTTP clients), benches/bench_report.py (parsers,
# the printed summary, the JSON). Progress lines go to stderr, the summary to stdout.
#
# How to read the summary (printed at the end, also written to target/bench/proxy-<UTC time>.json):
#  1. throughput: req/s and p50/p99 latency (ms) from wrk for each path. The processes:
#       up         nginx `return 200 "ok\n"` hit directly: the upstream nginx itself (the app
#                  behind every proxy, worker_processes auto), a standalone server answering by
#                  itself like `verify` below: the reference for verify / nginx_return_200
#       base       nginx proxy_pass -> upstream (keepalive pool)
#       ours       dingtalk-auth-proxy -> upstream, logged in, cookie session (session.store=cookie)
#       redis      the same with session.store=redis: each request reads its session from Redis
#       areq       nginx auth_request (the shape of deploy/nginx/auth_request.conf) asking a second
#                  dingtalk-auth-proxy in auth-only mode (no upstream) at /_auth/verify, then
#                  proxy_pass -> upstream: the "nginx in front, we only verify" deployment
#       verify     that auth-only proxy's /_auth/verify hit directly (what nginx's subrequest costs us)
#       anon       ours without a session: the 401 answer, upstream never called
#     Every scenario runs at every BENCH_CONNS count, BENCH_ROUNDS times. The rounds are
#     interleaved (round 1: every connection count, every scenario; then round 2, ...), so a
#     slow drift of the shared machine's load hits every scenario alike. One table per
#     connection count: the MEDIAN req/s over the rounds, min-max req/s, the median p50 and p99;
#     non-2xx and errors are summed over the rounds (non-2xx must be 0, except anon).
#     Then, per connection count, the ratios of req/s ours_cookie / nginx_proxy_pass,
#     verify / nginx_return_200 (up), redis / cookie, nginx_auth_request / nginx_proxy_pass,
#     ours_cookie / nginx_auth_request, each as:
#       of medians        median req/s of one / median req/s of the other
#       median of rounds  the median of the per-round ratios (same round, same minute: the less
#                         noisy figure when the load drifts)
#       per round         the ratio in each round
#     and "p99 difference (ms): ours - nginx proxy_pass" (of medians, median of rounds, per
#     round). The performance targets (ours_cookie / nginx_proxy_pass >= 1.0 and p99 difference
#     <= 1 ms at every connection count, verify / nginx_return_200 >= 0.8) are marked met or
#     MISSED, judged on the "of medians" figure. All processes share the machine's cores with
#     wrk, so compare the ratios of one run, not absolute figures across machines.
#  2. instructions per request (callgrind): the process runs under valgrind; BENCH_WARMUP
#     requests, counters zeroed (callgrind_control -z), BENCH_REQUESTS sequential keep-alive
#     requests, counters dumped (callgrind_control -d). The figure is guest instructions divided
#     by the request count: it does not depend on load or CPU speed, so it is the number to
#     compare across runs (a change of a few % is real). "startup instr" is the dump taken right
#     after the port opened (the startup-only baseline; it is not subtracted because the counted
#     window never contains it). malloc/req counts calls into malloc/calloc/realloc/
#     posix_memalign per request. nginx runs as one process (master_process off) with only the
#     proxy_pass server, so the upstream's work is in neither figure.
#     `perf stat -e instructions` is used as well when the CPU counter is readable (not in most VMs).
#  3. syscalls per request: strace -f -c attached to the running process (after warm-up) for
#     BENCH_REQUESTS sequential keep-alive requests; total calls / requests, with the top calls.
#     Sequential requests are the worst case (no batching of events per epoll_wait).
#  4. memory: VmRSS from /proc/PID/status of a freshly started process, after the syscall run,
#     and while BENCH_IDLE_CONNS keep-alive connections (each did one GET /_auth/healthz) stay
#     open; KiB/conn = (RSS with conns - RSS before) / open conns. The proxy's header read
#     timeout is raised to 300 s for this process only (by default it closes a keep-alive
#     connection idle for 10 s, before 10,000 are open on a busy machine). The last line is the
#     RSS (and peak) of the cookie proxy after all wrk runs.
#
# The JSON (keys; connection counts are strings, "64"):
#   meta                        date, commit, dirty, cpus, load_start, load_end, nginx, kernel,
#                               secs, conns (list), rounds, requests, warmup, idle_conns,
#                               callgrind, elapsed_s
#   throughput[conns][scenario] label, rps (median), rps_min, rps_max, p50_ms, p99_ms (medians),
#                               non2xx, errors (sums), rounds: [{round, rps, p50_ms, p99_ms,
#                               non2xx, errors, requests}, ...] (the raw per-round wrk figures)
#   throughput_ratios[conns][name]  of_medians, median_of_rounds, per_round (list), note,
#                               and target, met for the two ratios with a target
#   p99_difference_ms[conns]["ours_cookie - nginx_proxy_pass"]  same fields as a ratio
#   redis_commands_per_request  Redis commands / proxied requests over all Redis-mode wrk runs
#   instructions, instruction_ratios, perf, syscalls, syscall_ratio_ours_nginx, memory_kib:
#                               sections 2-4, as before
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
secs=${1:-10}
conns_list=${BENCH_CONNS:-64 256}
[ $# -ge 2 ] && conns_list=$2
rounds=${BENCH_ROUNDS:-3}
N=${BENCH_REQUESTS:-2000}
WARM=${BENCH_WARMUP:-50}
IDLE=${BENCH_IDLE_CONNS:-10000}
CG=${BENCH_CALLGRIND:-1}
outdir=${BENCH_OUT:-target/bench}

exec 9>&2 # the real stderr: a trap may fire inside a function whose stderr is redirected
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&9; }
die() { say "FAILED: $*"; exit 1; }
[[ $secs =~ ^[1-9][0-9]*$ ]] || die "seconds must be a positive integer, not '$secs'"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, not '$rounds'"
read -r -a conns_arr <<< "$conns_list"
[ ${#conns_arr[@]} -gt 0 ] || die "no connection counts (BENCH_CONNS or the second argument)"
for c in "${conns_arr[@]}"; do [[ $c =~ ^[1-9][0-9]*$ ]] || die "connection count must be a positive integer, not '$c'"; done

# ---- tools -------------------------------------------------------------------------------
missing=()
for b in nginx wrk curl python3 redis-server redis-cli valgrind callgrind_control strace timeout; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing+=("$b")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (apt-get install -y nginx-light wrk curl redis-server valgrind strace)"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx_bin" -V 2>&1 | grep -q http_auth_request_module || die "this nginx has no auth_request module (use nginx-light or fuller)"
perf_event=${BENCH_PERF_EVENT:-instructions}
perf_ok=0
if command -v perf >/dev/null 2>&1 && perf stat -x, -e "$perf_event" -- true 2>&1 | grep -q "^[0-9]"; then perf_ok=1; fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ "$IDLE" -gt 0 ] && [ "$nofile" -lt $((IDLE + 512)) ]; then
  say "open-file limit $nofile: idle connections lowered to $((nofile - 512))"
  IDLE=$((nofile - 512))
fi

# ---- process bookkeeping: every process started here is stopped on exit -----------------------
work=
pids=()
last_pid=
start_bg() { # name cmd... (stdout+stderr to $work/name.log); sets last_pid
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
}
stop_pid() { # pid [seconds=15]: TERM, wait bounded, then KILL (children too)
  local pid=$1 t=${2:-15} kids i
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  for k in $kids "$pid"; do kill -KILL "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}" 5; done
  if [ $rc -ne 0 ] && [ -n "$work" ] && [ -d "$work" ]; then
    say "exit $rc; last lines of the logs:"
    for f in "$work"/*.log; do [ -s "$f" ] && { echo "== $f" >&9; tail -n 5 "$f" >&9; }; done
  fi
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building (cargo build --release, example fake_dingtalk)"
cargo build --release --quiet
cargo build --release --quiet --example fake_dingtalk
bin=target/release/dingtalk-auth-proxy
work=$(mktemp -d /tmp/dap-bench.XXXXXX)
kv=$work/results.tsv
: > "$kv"
put() { printf '%s\t%s\n' "$1" "$2" >> "$kv"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port [seconds=10] [pid]
  local i
  for ((i = 0; i < ${2:-10} * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then die "process $3 for port $1 exited"; fi
    sleep 0.05
  done
  die "port $1 never opened"
}
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
client() { timeout 900 python3 benches/bench_client.py "$@"; }

# ---- configuration ---------------------------------------------------------------------------
up=$(free_port); base=$(free_port); areq=$(free_port); ours=$(free_port); rport=$(free_port)
ours_redis=$(free_port); authp=$(free_port)
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
temps="client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;"
proxy_headers='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;'
cat > "$work/nginx.conf" <<NGINX
$user
worker_processes auto;   # as many as our runtime has threads: a fair baseline
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;   # hyper has no per-connection request cap either
  $temps
  upstream app { server 127.0.0.1:$up; keepalive 64; keepalive_requests 1000000; }
  upstream dingtalk_auth_proxy { server 127.0.0.1:$authp; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$up; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$base;
    location / { proxy_pass http://app; $proxy_headers }
  }
  # deploy/nginx/auth_request.conf, minus the login/unavailable pages (never reached here).
  server {
    listen 127.0.0.1:$areq;
    location = /_auth/verify {
      internal;
      proxy_pass http://dingtalk_auth_proxy;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host \$host;
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Forwarded-Uri "";
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_auth/verify;
      auth_request_set \$dap_user_id     \$upstream_http_x_user_id;
      auth_request_set \$dap_user_mobile \$upstream_http_x_user_mobile;
      auth_request_set \$dap_set_cookie  \$upstream_http_set_cookie;
      add_header Set-Cookie \$dap_set_cookie;
      proxy_pass http://app;
      $proxy_headers
      proxy_set_header X-User-Id     \$dap_user_id;
      proxy_set_header X-User-Mobile \$dap_user_mobile;
    }
  }
}
NGINX
# One nginx process (no master), only the proxy_pass path (+ return 200, + healthz for the idle
# connections): what section 2 (under callgrind), 3 (strace) and 4 (RSS) measure.
single_nginx_conf() { # port prefix-dir
  mkdir -p "$2"
  cat > "$2/nginx.conf" <<NGINX
$user
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $2/nginx.pid;
error_log $2/error.log warn;
events { worker_connections $((nofile - 64)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $2/body; proxy_temp_path $2/proxy; fastcgi_temp_path $2/fcgi; uwsgi_temp_path $2/uwsgi; scgi_temp_path $2/scgi;
  upstream app { server 127.0.0.1:$up; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$1;
    location = /_auth/healthz { return 200 "ok"; }
    location = /ret200 { return 200 "ok\n"; }
    location / { proxy_pass http://app; $proxy_headers }
  }
}
NGINX
}

start_bg nginx "$nginx_bin" -p "$work" -c "$work/nginx.conf" -g 'daemon off;'
start_bg redis redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work"
start_bg fake target/release/examples/fake_dingtalk
for _ in $(seq 1 200); do grep -q listening "$work/fake.log" 2>/dev/null && break; sleep 0.05; done
fake=$(sed -n 's/^fake dingtalk listening on //p' "$work/fake.log")
[ -n "$fake" ] || die "fake DingTalk did not start"

dap_env=(
  DAP_DINGTALK__APP_KEY=dingfakeappkey DAP_DINGTALK__APP_SECRET=fake-app-secret-0123456789
  DAP_DINGTALK__CORP_ID=dingfakecorp DAP_DINGTALK__API_BASE="$fake" DAP_DINGTALK__NEW_API_BASE="$fake"
  DAP_DINGTALK__LOGIN_BASE="$fake" DAP_DINGTALK__JSAPI_URL="$fake/dingtalk.open.js"
  DAP_SESSION__SECRET=bench-session-secret-0123456789abcdef RUST_LOG=warn
)
proxy_env=("${dap_env[@]}" DAP_UPSTREAM="http://127.0.0.1:$up")
redis_env=(DAP_SESSION__STORE=redis DAP_SESSION__REDIS_URL="redis://127.0.0.1:$rport")
start_bg ours env "${proxy_env[@]}" DAP_LISTEN="127.0.0.1:$ours" "$bin"; ours_pid=$last_pid
wait_port "$rport"
start_bg ours_redis env "${proxy_env[@]}" "${redis_env[@]}" DAP_LISTEN="127.0.0.1:$ours_redis" "$bin"
# auth-only mode (no upstream), as deploy/nginx/auth_request.conf runs it
start_bg authonly env "${dap_env[@]}" DAP_VERIFY__URI_HEADER=X-Original-URI DAP_LISTEN="127.0.0.1:$authp" "$bin"
for p in "$up" "$base" "$areq" "$ours" "$ours_redis" "$authp"; do wait_port "$p"; done

# Log in the way the in-app page would: state from the page, a code from the fake JSAPI.
ua="Mozilla/5.0 AliApp(DingTalk/7.6.0)"
login() { # port -> the Cookie header of a logged-in session
  local jar="$work/jar.$1" page state code session
  page=$(curl -s --max-time 10 -c "$jar" -A "$ua" "http://127.0.0.1:$1/_auth/login?rd=%2F")
  state=$(printf '%s' "$page" | sed -n 's/.*"state":"\([^"]*\)".*/\1/p')
  code=$(curl -s --max-time 10 "$fake/_fake/mint?userid=zhangsan")
  curl -s --max-time 10 -b "$jar" -c "$jar" -o /dev/null "http://127.0.0.1:$1/_auth/callback?code=$code&state=$state"
  session=$(awk '$6=="dap_session"{print $7}' "$jar")
  [ -n "$session" ] || die "login on $1 failed"
  echo "Cookie: dap_session=$session"
}
status() { curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$@"; }
cookie=$(login "$ours")
cookie_redis=$(login "$ours_redis")
# the cookie session is sealed with session.secret only: the auth-only proxy accepts it too
[ "$(status -H "$cookie" "http://127.0.0.1:$ours/")" = 200 ] || die "proxy does not pass a logged-in request"
[ "$(status -H "$cookie_redis" "http://127.0.0.1:$ours_redis/")" = 200 ] || die "Redis proxy does not pass a logged-in request"
[ "$(status -H "$cookie" -H "X-Original-URI: /" "http://127.0.0.1:$authp/_auth/verify")" = 200 ] || die "auth-only verify does not accept the session"
[ "$(status -H "$cookie" "http://127.0.0.1:$areq/")" = 200 ] || die "nginx auth_request path does not pass a logged-in request"
[ "$(status "http://127.0.0.1:$areq/")" = 401 ] || die "nginx auth_request path lets an anonymous request through"

{
  put meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  put meta.commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  put meta.dirty "$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo 1 || echo 0)"
  put meta.cpus "$(nproc)"
  put meta.load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
  put meta.nginx "$("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///')"
  put meta.kernel "$(uname -r)"
  put meta.secs "$secs"; put meta.conns "${conns_arr[*]}"; put meta.rounds "$rounds"; put meta.requests "$N"; put meta.warmup "$WARM"
  put meta.idle_conns "$IDLE"; put meta.callgrind "$CG"
}

# ---- 1. wrk ----------------------------------------------------------------------------------
run_wrk() { # round conns key label url [header...]
  local r=$1 c=$2 key=$3 label=$4 url=$5 t=2; shift 5
  local hargs=() h f parsed rps p50 p99 non2xx errs reqs
  for h in "$@"; do hargs+=(-H "$h"); done
  [ "$c" -ge 2 ] || t=1 # wrk wants at least one connection per thread
  f="$work/wrk.$r.$c.$key.txt"
  timeout $((secs + 60)) wrk -t"$t" -c"$c" -d"${secs}s" --timeout 10s --latency "${hargs[@]}" "$url" > "$f" \
    || die "wrk $key (round $r, $c connections) failed: $(cat "$f")"
  parsed=$(python3 benches/bench_report.py wrk "$f") || die "cannot parse $f"
  read -r rps p50 p99 non2xx errs reqs <<< "$parsed"
  put "wrk.$r.$c.$key.rps" "$rps"; put "wrk.$r.$c.$key.p50_ms" "$p50"; put "wrk.$r.$c.$key.p99_ms" "$p99"
  put "wrk.$r.$c.$key.non2xx" "$non2xx"; put "wrk.$r.$c.$key.errors" "$errs"; put "wrk.$r.$c.$key.requests" "$reqs"
  say "$(printf '[round %s/%s, %4s conns] %-42s %9s req/s  p50 %sms  p99 %sms  non-2xx %s  errors %s' \
    "$r" "$rounds" "$c" "$label" "$rps" "$p50" "$p99" "$non2xx" "$errs")"
  if [ "$key" != anon ] && [ "$non2xx" != 0 ]; then say "WARNING: $key (round $r, $c connections) had $non2xx non-2xx answers"; fi
}
redis_calls() {
  timeout 10 redis-cli -p "$rport" info stats | awk -F: '/^total_commands_processed/{print $2}' | tr -d '\r'
}
nruns=$((7 * ${#conns_arr[@]} * rounds))
say "1. wrk: connections ${conns_arr[*]}, $rounds round(s) interleaved, ${secs}s per run: $nruns runs, about $((nruns * (secs + 1) / 60 + 1)) min ($(nproc) cores shared with everything)"
for ((r = 1; r <= rounds; r++)); do
  for c in "${conns_arr[@]}"; do
    run_wrk "$r" "$c" up "nginx return 200 (upstream nginx, direct)" "http://127.0.0.1:$up/"
    run_wrk "$r" "$c" base "nginx proxy_pass (baseline)" "http://127.0.0.1:$base/"
    run_wrk "$r" "$c" ours "this proxy, logged in (cookie)" "http://127.0.0.1:$ours/" "$cookie"
    before=$(redis_calls) || die "redis-cli info failed"
    run_wrk "$r" "$c" redis "this proxy, logged in (Redis)" "http://127.0.0.1:$ours_redis/" "$cookie_redis"
    after=$(redis_calls) || die "redis-cli info failed"
    put "wrk.$r.$c.redis.redis_cmds" "$((after - before))"
    run_wrk "$r" "$c" areq "nginx auth_request -> verify, -> upstream" "http://127.0.0.1:$areq/" "$cookie"
    run_wrk "$r" "$c" verify "/_auth/verify alone (auth-only proxy)" "http://127.0.0.1:$authp/_auth/verify" "$cookie" "X-Original-URI: /"
    run_wrk "$r" "$c" anon "this proxy, anonymous 401" "http://127.0.0.1:$ours/api" "Accept: application/json"
  done
done
put mem.ours_loaded.rss "$(rss_kib "$ours_pid")"; put mem.ours_loaded.hwm "$(hwm_kib "$ours_pid")"

# ---- 2. instructions per request (callgrind) -------------------------------------------------
cg_start() { # name port [VAR=value...] cmd...: starts cmd under callgrind, waits for the port,
  #            dumps the startup counts (env first: valgrind does not follow the exec of `env`)
  local name=$1 port=$2 vars=(); shift 2
  while [[ $1 == *=* ]]; do vars+=("$1"); shift; done
  start_bg "cg_$name" env "${vars[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.$name" "$@"
  cg_pid=$last_pid; cg_dumps=0
  wait_port "$port" 180 "$cg_pid"
  cg_dump "$name"
  read -r ir _ < <(python3 benches/bench_report.py cg "$work/cg.$name.$cg_dumps")
  put "cg.$name.startup" "$ir"
}
cg_dump() { # name: callgrind_control -d, waits for the dump file
  local i
  cg_dumps=$((cg_dumps + 1))
  timeout 120 callgrind_control -d "$cg_pid" >> "$work/callgrind_control.log" 2>&1 || die "callgrind_control -d $cg_pid failed"
  for ((i = 0; i < 600; i++)); do [ -s "$work/cg.$1.$cg_dumps" ] && break; sleep 0.1; done
  [ -s "$work/cg.$1.$cg_dumps" ] || die "no callgrind dump $work/cg.$1.$cg_dumps"
  sleep 0.2
}
cg_phase() { # name key port path expect [header...]
  local name=$1 key=$2 port=$3 path=$4 expect=$5; shift 5
  client seq "$port" "$path" "$WARM" "$expect" "$@" 2>>"$work/client.log" || die "warm-up of $name.$key failed"
  timeout 120 callgrind_control -z "$cg_pid" >> "$work/callgrind_control.log" 2>&1 || die "callgrind_control -z failed"
  client seq "$port" "$path" "$N" "$expect" "$@" 2>>"$work/client.log" || die "requests of $name.$key failed"
  cg_dump "$name"
  read -r ir mallocs < <(python3 benches/bench_report.py cg "$work/cg.$name.$cg_dumps")
  put "cg.$name.$key.ir" "$ir"; put "cg.$name.$key.mallocs" "$mallocs"; put "cg.$name.$key.n" "$N"
  say "$(printf '%-44s %9d instructions/request  %.2f malloc/request' "callgrind $name $key" $((ir / N)) "$(python3 -c "print($mallocs/$N)")")"
}
if [ "$CG" = 1 ]; then
  say "2. callgrind: $N sequential requests per path after $WARM warm-up ones"
  p=$(free_port)
  cg_start ours "$p" "${proxy_env[@]}" DAP_LISTEN="127.0.0.1:$p" "$bin"
  cg_phase ours proxy "$p" / 200 "$cookie"
  cg_phase ours verify "$p" /_auth/verify 200 "$cookie" "X-Original-URI: /"
  stop_pid "$cg_pid" 60
  p=$(free_port)
  cg_start ours_redis "$p" "${proxy_env[@]}" "${redis_env[@]}" DAP_LISTEN="127.0.0.1:$p" "$bin"
  cg_phase ours_redis proxy "$p" / 200 "$cookie_redis"
  stop_pid "$cg_pid" 60
  p=$(free_port)
  single_nginx_conf "$p" "$work/ng_cg"
  cg_start nginx "$p" "$nginx_bin" -p "$work/ng_cg" -c "$work/ng_cg/nginx.conf" -g 'daemon off; master_process off;'
  cg_phase nginx proxy "$p" / 200
  cg_phase nginx ret200 "$p" /ret200 200
  stop_pid "$cg_pid" 60
else
  say "2. callgrind skipped (BENCH_CALLGRIND=0)"
fi

# ---- 3. syscalls (strace) and 4. memory, on fresh native processes ------------------------------
strace_phase() { # name pid port path expect [header...]
  local name=$1 pid=$2 port=$3 path=$4 expect=$5 spid i t ok
  shift 5
  client seq "$port" "$path" "$WARM" "$expect" "$@" 2>>"$work/client.log" || die "warm-up of strace $name failed"
  start_bg "strace_$name" strace -f -c -o "$work/st.$name" -p "$pid"; spid=$last_pid
  for ((i = 0; i < 200; i++)); do # every thread traced?
    ok=1
    for t in /proc/"$pid"/task/*/status; do
      [ "$(awk '/^TracerPid:/{print $2}' "$t" 2>/dev/null || echo 0)" != 0 ] || ok=0
    done
    [ $ok = 1 ] && break
    kill -0 "$spid" 2>/dev/null || die "strace could not attach: $(cat "$work/strace_$name.log")"
    sleep 0.05
  done
  [ $ok = 1 ] || die "strace did not attach to every thread of $pid"
  client seq "$port" "$path" "$N" "$expect" "$@" 2>>"$work/client.log" || die "requests of strace $name failed"
  kill -INT "$spid"
  for ((i = 0; i < 200; i++)); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
  stop_pid "$spid" 5
  read -r total calls < <(python3 benches/bench_report.py strace "$work/st.$name")
  put "st.$name.total" "$total"; put "st.$name.calls" "$calls"; put "st.$name.n" "$N"
  say "$(printf '%-44s %s syscalls/request' "strace $name" "$(python3 -c "print(round($total/$N, 2))")")"
}
perf_phase() { # name pid port path expect [header...]
  local name=$1 pid=$2 port=$3 path=$4 expect=$5 ppid_ i v
  shift 5
  start_bg "perf_$name" perf stat -x, -e "$perf_event" -o "$work/perf.$name" -p "$pid"; ppid_=$last_pid
  sleep 0.5
  client seq "$port" "$path" "$N" "$expect" "$@" 2>>"$work/client.log" || die "requests of perf $name failed"
  kill -INT "$ppid_"
  for ((i = 0; i < 100; i++)); do kill -0 "$ppid_" 2>/dev/null || break; sleep 0.05; done
  stop_pid "$ppid_" 5
  v=$(awk -F, '/^[0-9]/{print $1; exit}' "$work/perf.$name" 2>/dev/null || true)
  [ -n "$v" ] && put "perf.$name.proxy" "$(python3 -c "print($v/$N)")"
}
idle_phase() { # name pid port
  local name=$1 pid=$2 port=$3 cpid i line
  [ "$IDLE" -gt 0 ] || return 0
  start_bg "idle_$name" timeout 900 python3 benches/bench_client.py idle "$port" /_auth/healthz "$IDLE" 300; cpid=$last_pid
  for ((i = 0; i < 3000; i++)); do
    grep -q '^ready' "$work/idle_$name.log" 2>/dev/null && break
    kill -0 "$cpid" 2>/dev/null || die "idle client for $name exited: $(cat "$work/idle_$name.log")"
    sleep 0.1
  done
  line=$(grep '^ready' "$work/idle_$name.log") || die "idle client for $name not ready after 300 s"
  sleep 1
  read -r _ open failed took <<< "$line"
  put "mem.$name.conns" "$(rss_kib "$pid")"; put "mem.$name.conns_open" "$open"; put "mem.$name.conns_failed" "$failed"
  put "mem.$name.fds" "$(ls "/proc/$pid/fd" | wc -l)"
  say "$(printf '%-44s %s open (%s failed, %ss to open), VmRSS %s KiB' "$name: idle keep-alive connections" "$open" "$failed" "$took" "$(rss_kib "$pid")")"
  stop_pid "$cpid" 10
}
say "3./4. strace and memory: fresh processes, $N sequential requests, $IDLE idle connections"
p=$(free_port)
start_bg ours_m env "${proxy_env[@]}" DAP_LIMITS__HEADER_READ_TIMEOUT=300s DAP_LIMITS__IDLE_TIMEOUT=300s \
  DAP_LISTEN="127.0.0.1:$p" "$bin"; m_pid=$last_pid
wait_port "$p" 10 "$m_pid"; sleep 1
put mem.ours.idle "$(rss_kib "$m_pid")"
strace_phase ours "$m_pid" "$p" / 200 "$cookie"
[ $perf_ok = 1 ] && perf_phase ours "$m_pid" "$p" / 200 "$cookie"
put mem.ours.after_requests "$(rss_kib "$m_pid")"
idle_phase ours "$m_pid" "$p"
stop_pid "$m_pid"
p=$(free_port)
single_nginx_conf "$p" "$work/ng_m"
start_bg ng_m "$nginx_bin" -p "$work/ng_m" -c "$work/ng_m/nginx.conf" -g 'daemon off; master_process off;'; m_pid=$last_pid
wait_port "$p" 10 "$m_pid"; sleep 1
put mem.nginx.idle "$(rss_kib "$m_pid")"
strace_phase nginx "$m_pid" "$p" / 200
[ $perf_ok = 1 ] && perf_phase nginx "$m_pid" "$p" / 200
put mem.nginx.after_requests "$(rss_kib "$m_pid")"
idle_phase nginx "$m_pid" "$p"
stop_pid "$m_pid"
if [ $perf_ok = 1 ]; then
  put perf.event "$perf_event"; put perf.note "perf stat -e $perf_event attached for $N requests (includes idle wake-ups)"
else
  put perf.note "not used: \`perf stat -e $perf_event\` is not supported here (no readable CPU counter in this VM); callgrind figures only"
fi

# ---- report ----------------------------------------------------------------------------------
put meta.load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
put meta.elapsed_s "$(( $(date +%s) - t_start ))"
mkdir -p "$outdir"
python3 benches/bench_report.py report "$kv" "$outdir/proxy-$(date -u +%Y-%m-%dT%H%M%SZ).json"

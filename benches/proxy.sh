#!/usr/bin/env bash
# Proxy overhead, measured as ratios against nginx in the same run, all on 127.0.0.1:
#   upstream  : nginx answering `200 ok` (keepalive)
#   baseline  : nginx proxy_pass → upstream
#   ours      : dingtalk-auth-proxy (release build) → upstream, as a logged-in user
#   verify    : GET /_auth/verify with a session (what nginx auth_request calls)
#   redis     : the same logged-in proxying with session.store = "redis" (a second proxy on a
#               redis-server of its own): every request reads its session from Redis
# usage: bash benches/proxy.sh [seconds=10] [connections=64]
# Needs nginx, wrk, curl, python3, redis-server (apt-get install -y nginx-light wrk curl redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
for b in nginx wrk curl python3 redis-server redis-cli; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { echo "missing: $b" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --quiet
cargo build --release --quiet --example fake_dingtalk

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 never opened" >&2; return 1
}

up=$(free_port); base=$(free_port); ours=$(free_port); rport=$(free_port); ours_redis=$(free_port)
user=""; [ "$(id -u)" -eq 0 ] && user="user root;"
cat > "$work/nginx.conf" <<NGINX
$user
worker_processes auto;   # as many as our runtime has threads: a fair baseline
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  upstream app { server 127.0.0.1:$up; keepalive 64; }
  server { listen 127.0.0.1:$up; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$base;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
"$nginx_bin" -p "$work" -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)

redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)

target/release/examples/fake_dingtalk > "$work/fake.out" & pids+=($!)
for _ in $(seq 1 200); do grep -q listening "$work/fake.out" 2>/dev/null && break; sleep 0.05; done
fake=$(sed -n 's/^fake dingtalk listening on //p' "$work/fake.out")

DAP_LISTEN=127.0.0.1:$ours DAP_UPSTREAM=http://127.0.0.1:$up \
DAP_DINGTALK__APP_KEY=dingfakeappkey DAP_DINGTALK__APP_SECRET=fake-app-secret-0123456789 \
DAP_DINGTALK__CORP_ID=dingfakecorp DAP_DINGTALK__API_BASE=$fake DAP_DINGTALK__NEW_API_BASE=$fake \
DAP_DINGTALK__LOGIN_BASE=$fake DAP_DINGTALK__JSAPI_URL=$fake/dingtalk.open.js \
DAP_SESSION__SECRET=bench-session-secret-0123456789abcdef RUST_LOG=warn \
  target/release/dingtalk-auth-proxy & pids+=($!)
wait_port "$rport"
DAP_LISTEN=127.0.0.1:$ours_redis DAP_UPSTREAM=http://127.0.0.1:$up \
DAP_DINGTALK__APP_KEY=dingfakeappkey DAP_DINGTALK__APP_SECRET=fake-app-secret-0123456789 \
DAP_DINGTALK__CORP_ID=dingfakecorp DAP_DINGTALK__API_BASE=$fake DAP_DINGTALK__NEW_API_BASE=$fake \
DAP_DINGTALK__LOGIN_BASE=$fake DAP_DINGTALK__JSAPI_URL=$fake/dingtalk.open.js \
DAP_SESSION__SECRET=bench-session-secret-0123456789abcdef RUST_LOG=warn \
DAP_SESSION__STORE=redis DAP_SESSION__REDIS_URL=redis://127.0.0.1:$rport \
  target/release/dingtalk-auth-proxy & pids+=($!)
wait_port "$up"; wait_port "$base"; wait_port "$ours"; wait_port "$ours_redis"

# Log in the way the in-app page would: state from the page, a code from the fake JSAPI.
ua="Mozilla/5.0 AliApp(DingTalk/7.6.0)"
login() { # port → the Cookie header of a logged-in session
  local jar="$work/jar.$1" page state code session
  page=$(curl -s -c "$jar" -A "$ua" "http://127.0.0.1:$1/_auth/login?rd=%2F")
  state=$(printf '%s' "$page" | sed -n 's/.*"state":"\([^"]*\)".*/\1/p')
  code=$(curl -s "$fake/_fake/mint?userid=zhangsan")
  curl -s -b "$jar" -c "$jar" -o /dev/null "http://127.0.0.1:$1/_auth/callback?code=$code&state=$state"
  session=$(awk '$6=="dap_session"{print $7}' "$jar")
  [ -n "$session" ] || { echo "login on $1 failed" >&2; exit 1; }
  [ "$(curl -s -H "Cookie: dap_session=$session" -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/")" = 200 ] || { echo "proxy on $1 does not pass" >&2; exit 1; }
  echo "Cookie: dap_session=$session"
}
cookie=$(login "$ours")
cookie_redis=$(login "$ours_redis")
redis_calls() { redis-cli -p "$rport" info stats | awk -F: '/^total_commands_processed/{print $2}' | tr -d '\r'; }

run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "$3" "$2"); else out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$2"); fi
  local rps p50 p99
  rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(printf '%s\n' "$out" | awk '$1=="50%"{print $2}')
  p99=$(printf '%s\n' "$out" | awk '$1=="99%"{print $2}')
  printf '%-34s %10s req/s   p50 %-9s p99 %s\n' "$1" "$rps" "$p50" "$p99" >&2
  echo "$rps"
}
echo "wrk: 2 threads, $conns connections, ${secs}s each, all on 127.0.0.1 ($(nproc) cores shared)" >&2
r_up=$(run "upstream direct (nginx 200 ok)" "http://127.0.0.1:$up/")
r_base=$(run "nginx proxy_pass (baseline)" "http://127.0.0.1:$base/")
r_ours=$(run "dingtalk-auth-proxy, logged in" "http://127.0.0.1:$ours/" "$cookie")
r_anon=$(run "dingtalk-auth-proxy, anonymous 401" "http://127.0.0.1:$ours/api" "Accept: application/json")
r_ver=$(run "dingtalk-auth-proxy /_auth/verify" "http://127.0.0.1:$ours/_auth/verify" "$cookie")
before=$(redis_calls)
r_redis=$(run "dingtalk-auth-proxy, logged in, Redis" "http://127.0.0.1:$ours_redis/" "$cookie_redis")
after=$(redis_calls)
python3 - "$r_base" "$r_ours" "$r_ver" "$r_anon" "$r_redis" "$before" "$after" "$secs" <<'PY'
import sys
base, ours, ver, anon, red, before, after, secs = map(float, sys.argv[1:])
print(f"ratio ours/nginx proxy_pass (throughput): {ours/base:.2f}")
print(f"ratio verify/nginx proxy_pass (throughput): {ver/base:.2f}")
print(f"ratio anonymous-401/nginx proxy_pass (throughput): {anon/base:.2f}")
print(f"ratio Redis sessions/cookie sessions (throughput): {red/ours:.2f}")
# wrk's Requests/sec counts completed requests over the run; commands include a few INFO calls.
print(f"Redis commands per proxied request: {(after - before) / (red * secs):.2f}")
PY

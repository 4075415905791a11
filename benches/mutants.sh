#!/usr/bin/env bash
# Mutation testing (cargo-mutants, https://mutants.rs) of the security-critical modules:
#   src/proxy.rs  src/identity.rs  src/access.rs  src/redirect.rs  src/session.rs
# and, since the structure change, where identity rendering now lives:
#   src/user.rs (the identity-field table)
# Each mutant (a function body replaced, an operator swapped, a `!` deleted, ...) is built and
# run against the test subset below; "missed" means every test still passed with the code
# broken. At the end it prints the caught / missed / unviable / timeout counts and lists the
# missed mutants. Results stay in target/mutants/mutants.out/ (outcomes.json, *.txt, log/).
#
# usage (from anywhere; it works on the repo it sits in, never in place: cargo-mutants copies
# the tree, minus .gitignore'd files such as target/, to a scratch directory and mutates that):
#   bash benches/mutants.sh [minutes=45]
# env: MUTANTS_JOBS (default 1: parallel mutants, each with its own build dir),
#      MUTANTS_TIMEOUT (default 60: seconds of tests per mutant before it counts as a timeout),
#      MUTANTS_NICE (default 10).
# Needs cargo-mutants: `cargo install cargo-mutants --locked`. Not part of .ci/run: a full run
# takes tens of minutes on 2 cores.
#
# The test subset: the lib unit tests plus the integration test binaries that exercise these
# modules over real HTTP on 127.0.0.1 with only in-process servers (fake DingTalk, echo app):
#   decision     proxy and verify give the same answer (access, identity, session)
#   faults       upstream/DingTalk breaking mid-answer (proxy's error paths)
#   hardening    skip_auth canonical paths, upgrades, trusted proxies, revocation, limits, cookies
#   inapp_login  the in-app login end to end: session cookie, stripped/injected identity headers
#   oauth_login  the desktop OAuth login: state binding, rd handling
#   properties   proptest: is_canonical, safe_rd, identity-header stripping, cookie decoding
#   user_facing  concurrent logins, dead ends, upstream down or slow
#   clock        session and login-state expiry, revalidation timing (manual clock)
# Left out: tests that need external programs (nginx, caddy, app_servers, real_servers,
# browser, demo_pages, no_leftovers, sdk_conformance) or run the built binary or example
# (cli, login_logs, demo), and those that do not reach these modules (dingtalk_client,
# fake_dingtalk, traefik_config). Unmutated, the subset runs in about 20 s, 10 s of it one
# hardening test that waits for a connection to close.
#
# The subset is given with --cargo-arg, not after `--`: cargo-mutants' build phase runs
# `cargo test --no-run` with the cargo args only, so args after `--` would still build every
# test target and example for each mutant (about 3x the build time). CARGO_PROFILE_DEV_DEBUG=0
# (the test profile inherits dev) cuts each rebuild's link time again by about 3x; it only
# affects the scratch copy's own target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-45}
jobs=${MUTANTS_JOBS:-1}
per_mutant=${MUTANTS_TIMEOUT:-60}
niceness=${MUTANTS_NICE:-10}
out=target/mutants

files=(src/proxy.rs src/identity.rs src/access.rs src/redirect.rs src/session.rs src/user.rs)
tests=(--lib --test=decision --test=faults --test=hardening --test=inapp_login
  --test=oauth_login --test=properties --test=user_facing --test=clock)

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "cargo-mutants is missing: cargo install cargo-mutants --locked" >&2
  exit 1
fi

args=(--timeout "$per_mutant" --jobs "$jobs" --output "$out")
for f in "${files[@]}"; do args+=(--file "$f"); done
for t in "${tests[@]}"; do args+=("--cargo-arg=$t"); done

export CARGO_PROFILE_DEV_DEBUG=0
mkdir -p "$out"
echo "cargo mutants ${args[*]}  (at most ${minutes} min)"
start=$(date +%s)
rc=0
# SIGINT lets cargo-mutants stop its current mutant and keep the results so far.
timeout --signal=INT --kill-after=120 "${minutes}m" \
  nice -n "$niceness" cargo mutants "${args[@]}" || rc=$?
elapsed=$(($(date +%s) - start))

res=$out/mutants.out
count() { if [ -f "$res/$1.txt" ]; then grep -c . "$res/$1.txt" || true; else echo 0; fi; }
caught=$(count caught)
missed=$(count missed)
unviable=$(count unviable)
timeouts=$(count timeout)
# mutants.json lists every mutant found (outcomes.json's total_mutants stops at the last tested).
total=$( (jq length "$res/mutants.json" || python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$res/mutants.json") 2>/dev/null || echo "?")
tested=$((caught + missed + unviable + timeouts))

echo
echo "== mutants: ${files[*]}"
echo "tests:    ${tests[*]}"
echo "wall:     $((elapsed / 60)) min $((elapsed % 60)) s (cargo mutants exit $rc)"
echo "total:    $total   tested: $tested"
echo "caught:   $caught"
echo "missed:   $missed"
echo "unviable: $unviable"
echo "timeout:  $timeouts"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "INCOMPLETE: stopped after ${minutes} min; rerun with more: bash benches/mutants.sh <minutes>"
fi
if [ "$missed" -gt 0 ]; then
  echo
  echo "== missed (no test failed with this change):"
  sort -V "$res/missed.txt"
fi
if [ "$timeouts" -gt 0 ]; then
  echo
  echo "== timeout (tests ran past ${per_mutant}s; usually a mutant that loops):"
  sort -V "$res/timeout.txt"
fi

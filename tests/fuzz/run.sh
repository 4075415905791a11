#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers an attacker reaches (cargo fuzz / libFuzzer).
#
#   tests/fuzz/run.sh [seconds]     # each target runs `seconds` (default 60), one job at a time
#
# Needs the nightly toolchain and `cargo install cargo-fuzz`. Not part of `cargo test`.
# Corpora grow in tests/fuzz/corpus/<target> (seeded from tests/fuzz/seeds/<target>);
# crashes are written to tests/fuzz/artifacts/<target>/ and make the script exit non-zero.
# Reproduce / minimise a crash from the repository root (these rebuild first):
#   cargo +nightly fuzz run  --fuzz-dir tests/fuzz <target> <artifact>
#   cargo +nightly fuzz tmin --fuzz-dir tests/fuzz <target> <artifact>
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [seconds]   (a positive whole number; default 60)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
fuzz_dir=tests/fuzz
targets=(cookie rd skip_path dingtalk_json)

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz on the nightly toolchain is needed: cargo install cargo-fuzz" >&2
    exit 2
fi

# Built once, then each target's binary is run as `cargo fuzz run` would run it (same
# libFuzzer arguments and ASAN_OPTIONS): `cargo fuzz run` rebuilds first, and the sources may
# change while the targets run, so all of them fuzz the one build made here.
echo "== building fuzz targets (nightly)"
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir"
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz_dir/target/$triple/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()

for t in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$t"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$t"
    # Seeds are copied in (never over a corpus file of the same name).
    for seed in "$fuzz_dir/seeds/$t"/*; do
        [ -f "$seed" ] || continue
        dest="$corpus/seed-$(basename "$seed")"
        [ -e "$dest" ] || cp "$seed" "$dest"
    done

    log="$logs/$t.log"
    echo "== fuzzing $t for ${secs}s"
    set +e
    # One process, no -fork/-jobs: one fuzzing job at a time.
    "$bin_dir/$t" -artifact_prefix="$fuzz_dir/artifacts/$t/" "$corpus" \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e

    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
    cov="$(grep -o '^#[0-9]*.*cov: [0-9]*' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)"
    line="$(printf '%-14s executions=%-10s exec/s=%-8s %s' "$t" "${execs:-?}" "${rate:-?}" "$cov")"

    if [ "$rc" -ne 0 ]; then
        artifact="$(grep -o 'Test unit written to [^ ]*' "$log" | tail -1 | sed 's/^Test unit written to //' || true)"
        echo "!! $t FAILED (exit $rc):" >&2
        if grep -q 'panicked at' "$log"; then
            grep -m1 -A4 'panicked at' "$log" | cut -c1-2000 >&2
        else
            tail -n 40 "$log" >&2
        fi
        grep -m1 '^SUMMARY' "$log" >&2 || true
        echo "!! artifact: ${artifact:-none written (see output above)}" >&2
        line="$line  CRASH (exit $rc) artifact=${artifact:-none}"
        failed+=("$t")
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi

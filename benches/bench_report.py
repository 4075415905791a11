#!/usr/bin/env python3
"""Parsers and the final report for benches/proxy.sh (standard library only).

  wrk FILE                  wrk --latency output -> `rps p50_ms p99_ms non2xx socket_errors requests`
  cg FILE                   a callgrind dump -> `instructions malloc_calls`
  strace FILE               `strace -c` output -> `total_calls name:calls,name:calls,...`
  report KVFILE JSONFILE    prints the summary table and writes the JSON
"""
import json
import re
import statistics
import sys

ALLOC = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}


def wrk(path):
    text = open(path).read()
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    lat = {}
    for pct, val in re.findall(r"^\s*(50|99)%\s+([\d.]+\w+)\s*$", text, re.M):
        lat[pct] = to_ms(val)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = sum(int(x) for x in errs.groups()) if errs else 0
    reqs = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if not rps:
        sys.exit(f"no Requests/sec in {path}:\n{text}")
    print(rps.group(1), lat.get("50", "nan"), lat.get("99", "nan"),
          non2xx.group(1) if non2xx else 0, total, reqs.group(1) if reqs else 0)


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        return float("nan")
    n, u = float(m.group(1)), m.group(2)
    return round(n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u], 4)


def cg(path):
    """Total Ir of one dump, and the calls into the malloc family made from outside libc's
    allocator itself (posix_memalign -> malloc inside glibc counts once)."""
    names = {}
    total = None
    allocs = 0
    fl = ""
    target = None
    idre = re.compile(r"^c?(fn|fl|fi|fe|ob|cob|cfi|cfl)=\((\d+)\)(?: (.*))?$")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("totals:") or (total is None and line.startswith("summary:")):
                total = int(line.split()[1])
                continue
            m = idre.match(line)
            if m:
                kind, ident, name = m.group(1), m.group(2), m.group(3)
                key = ("fl" if kind in ("fl", "fi", "fe", "cfi", "cfl") else kind, ident)
                if name is not None:
                    names[key] = name
                name = names.get(key, "")
                if line.startswith("fl="):
                    fl = name
                elif line.startswith("cfn="):
                    target = name.split("'")[0]
                continue
            if line.startswith("calls=") and target is not None:
                if target in ALLOC and "/malloc/" not in fl and "malloc.c" not in fl:
                    allocs += int(line[6:].split()[0])
                target = None
    if total is None:
        sys.exit(f"no totals in {path}")
    print(total, allocs)


def strace(path):
    total = None
    calls = []
    for line in open(path):
        f = line.split()
        if not f or f[0].startswith(("%", "-")):
            continue
        if f[-1] == "total":
            total = int(f[3])
        elif len(f) >= 5 and re.match(r"^[\d.]+$", f[0]):
            calls.append((f[-1], int(f[3])))
    if total is None:
        sys.exit(f"no total line in {path}:\n{open(path).read()}")
    calls.sort(key=lambda c: -c[1])
    print(total, ",".join(f"{n}:{c}" for n, c in calls) or "-")


WRK_ROWS = [
    ("up", "nginx `return 200`, direct (the upstream nginx)"),
    ("base", "nginx proxy_pass -> upstream (baseline)"),
    ("ours", "this proxy -> upstream, logged in (cookie session)"),
    ("redis", "this proxy -> upstream, logged in (Redis session)"),
    ("areq", "nginx auth_request -> our /_auth/verify; -> upstream"),
    ("verify", "our /_auth/verify alone (auth-only mode)"),
    ("anon", "this proxy, anonymous -> 401 (no upstream call)"),
]
WRK_FIELDS = ("rps", "p50_ms", "p99_ms", "non2xx", "errors", "requests")
# name -> (numerator, denominator, target or None, note)
RATIOS = [
    ("ours_cookie / nginx_proxy_pass", "ours", "base", 1.0, ""),
    ("verify / nginx_return_200", "verify", "up", 0.8,
     "nginx_return_200 = scenario `up`: nginx `return 200` on the upstream nginx (worker_processes auto), hit directly"),
    ("redis / cookie", "redis", "ours", None, ""),
    ("nginx_auth_request / nginx_proxy_pass", "areq", "base", None, ""),
    ("ours_cookie / nginx_auth_request", "ours", "areq", None, ""),
]
P99_DIFF = ("ours_cookie - nginx_proxy_pass", "ours", "base", 1.0)


def rnd(v, nd):
    return None if v is None else round(v, nd)


def fmt(v, spec, na="n/a"):
    return na if v is None else format(v, spec)


def section1(kv, out, p):
    """Section 1 (wrk): kv keys wrk.<round>.<conns>.<scenario>.<field>."""
    m = out["meta"]
    runs = {}  # (conns, scenario) -> {round: {field: value}}
    for k, v in kv.items():
        mt = re.match(r"^wrk\.(\d+)\.(\d+)\.(\w+)\.(\w+)$", k)
        if not mt:
            continue
        r, c, key, field = int(mt.group(1)), int(mt.group(2)), mt.group(3), mt.group(4)
        try:
            val = float(v)
            if field in ("non2xx", "errors", "requests", "redis_cmds"):
                val = int(val)
        except ValueError:
            val = None
        runs.setdefault((c, key), {}).setdefault(r, {})[field] = val
    conns = m.get("conns") or sorted({c for c, _ in runs})
    rounds = m.get("rounds")
    p(f"-- 1. throughput and latency: wrk -t2 -d{m.get('secs')}s --latency, keep-alive, 127.0.0.1; "
      f"connections {' '.join(map(str, conns))}; {rounds} round(s), interleaved --")
    p("   req/s, p50, p99: median over the rounds; min-max: of req/s; non-2xx, errors: summed over the rounds")
    out["throughput"] = {}
    out["throughput_ratios"] = {}
    out["p99_difference_ms"] = {}

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def combine(per_round, of_medians, nd):
        """per_round: {round: value}; the three views of one ratio or difference."""
        vals = [per_round[r] for r in sorted(per_round)]
        return {
            "of_medians": rnd(of_medians, nd),
            "median_of_rounds": rnd(med(vals), nd),
            "per_round": [rnd(v, nd) for v in vals],
        }

    for c in conns:
        tp = {}
        for key, label in WRK_ROWS:
            rr = runs.get((c, key))
            if not rr:
                continue
            per = [dict({"round": r}, **{f: rr[r].get(f) for f in WRK_FIELDS}) for r in sorted(rr)]
            rps = [x["rps"] for x in per if x["rps"] is not None]
            tp[key] = {
                "label": label,
                "rps": rnd(med(rps), 2),
                "rps_min": min(rps) if rps else None,
                "rps_max": max(rps) if rps else None,
                "p50_ms": rnd(med([x["p50_ms"] for x in per]), 4),
                "p99_ms": rnd(med([x["p99_ms"] for x in per]), 4),
                "non2xx": sum(x["non2xx"] or 0 for x in per),
                "errors": sum(x["errors"] or 0 for x in per),
                "rounds": per,
            }
        out["throughput"][str(c)] = tp
        p("")
        p(f"- {c} connections")
        p(f"{'scenario':<52} {'req/s':>9} {'min-max req/s':>17} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8} {'errors':>6}")
        for key, label in WRK_ROWS:
            row = tp.get(key)
            if not row:
                continue
            span = f"{fmt(row['rps_min'], '.0f')}-{fmt(row['rps_max'], '.0f')}"
            p(f"{label:<52} {fmt(row['rps'], '9.0f')} {span:>17} {fmt(row['p50_ms'], '7.2f')} {fmt(row['p99_ms'], '7.2f')} "
              f"{row['non2xx']:>8.0f} {row['errors']:>6.0f}")
            if key != "anon" and row["non2xx"]:
                p(f"  WARNING: {row['non2xx']:.0f} non-2xx answers in `{key}`")

        def round_vals(key, field):
            return {x["round"]: x[field] for x in tp.get(key, {}).get("rounds", []) if x[field] is not None}

        ratios = {}
        for name, a, b, target, note in RATIOS:
            if a not in tp or b not in tp:
                continue
            ra, rb = round_vals(a, "rps"), round_vals(b, "rps")
            per = {r: ra[r] / rb[r] for r in ra if rb.get(r)}
            ma, mb = tp[a]["rps"], tp[b]["rps"]
            e = combine(per, ma / mb if ma is not None and mb else None, 3)
            if note:
                e["note"] = note
            if target is not None:
                e["target"] = f">= {target}"
                e["met"] = None if e["of_medians"] is None else e["of_medians"] >= target
            ratios[name] = e
        out["throughput_ratios"][str(c)] = ratios
        p(f"ratios of req/s at {c} connections (1.00 = as fast; higher is better for the first name;"
          f" target judged on the ratio of medians):")
        p(f"  {'':<46} {'of medians':>10} {'median of rounds':>17}  {'per round':<24} target")
        for name, e in ratios.items():
            shown = name + (" (up)" if name.startswith("verify") else "")
            per = " ".join(fmt(v, ".3f") for v in e["per_round"])
            tgt = ""
            if "target" in e:
                tgt = f"{e['target']}: {'met' if e['met'] else 'MISSED'}"
            p(f"  {shown:<46} {fmt(e['of_medians'], '10.3f')} {fmt(e['median_of_rounds'], '17.3f')}  {per:<24} {tgt}".rstrip())
        name, a, b, limit = P99_DIFF
        if a in tp and b in tp:
            pa, pb = round_vals(a, "p99_ms"), round_vals(b, "p99_ms")
            per = {r: pa[r] - pb[r] for r in pa if r in pb}
            ma, mb = tp[a]["p99_ms"], tp[b]["p99_ms"]
            e = combine(per, ma - mb if ma is not None and mb is not None else None, 3)
            e["target"] = f"<= {limit}"
            e["met"] = None if e["of_medians"] is None else e["of_medians"] <= limit
            out["p99_difference_ms"][str(c)] = {name: e}
            per_s = " ".join(fmt(v, "+.3f") for v in e["per_round"])
            p(f"  {'p99 difference (ms): ours − nginx proxy_pass':<46} {fmt(e['of_medians'], '+10.3f')} "
              f"{fmt(e['median_of_rounds'], '+17.3f')}  {per_s:<24} {e['target']} ms: {'met' if e['met'] else 'MISSED'}")
    p("")
    p(f"  verify / nginx_return_200 (up): {RATIOS[1][4]}")
    cmds = [x.get("redis_cmds") for (c, key), rr in runs.items() if key == "redis" for x in rr.values()]
    reqs = [x.get("requests") for (c, key), rr in runs.items() if key == "redis" for x in rr.values()]
    if cmds and all(x is not None for x in cmds) and sum(r or 0 for r in reqs):
        out["redis_commands_per_request"] = round(sum(cmds) / sum(r or 0 for r in reqs), 3)
        p(f"  Redis commands per proxied request (Redis mode, all runs): {out['redis_commands_per_request']:.2f}")

def report(kvpath, jsonpath):
    kv = {}
    for line in open(kvpath):
        if "\t" in line:
            k, v = line.rstrip("\n").split("\t", 1)
            kv[k] = v

    def num(k):
        try:
            return float(kv[k])
        except (KeyError, ValueError):
            return None

    def typed(v):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v

    out = {"meta": {k[5:]: typed(v) for k, v in kv.items() if k.startswith("meta.")}}
    m = out["meta"]
    m["conns"] = [int(c) for c in str(m.get("conns", "")).split()]
    p = print
    p("")
    p(f"== dingtalk-auth-proxy benchmark  {m.get('date', '')}  commit {m.get('commit', '?')}{' (dirty tree)' if m.get('dirty') == 1 else ''}")
    p(f"   {m.get('cpus', '?')} CPUs, load average at start {m.get('load_start', '?')}, at end {m.get('load_end', '?')}; nginx {m.get('nginx', '?')}")
    p("")
    section1(kv, out, p)
    p("")
    n = m.get("requests")
    p(f"-- 2. CPU instructions per request: callgrind, {n} sequential keep-alive requests after {m.get('warmup')} warm-up ones --")
    p("   (counters zeroed after warm-up, dumped after the last answer: startup is not in the figure; deterministic, not wall time)")
    if m.get("callgrind") == 0:
        p("   skipped (BENCH_CALLGRIND=0)")
    else:
        p(f"{'path':<52} {'instr/req':>10} {'malloc/req':>10} {'startup instr':>14}")
    cg_rows = [
        ("ours.proxy", "this proxy -> upstream (cookie session)"),
        ("ours_redis.proxy", "this proxy -> upstream (Redis session)"),
        ("ours.verify", "our /_auth/verify"),
        ("nginx.proxy", "nginx proxy_pass -> upstream"),
        ("nginx.ret200", "nginx `return 200`"),
    ]
    out["instructions"] = {}
    for key, label in cg_rows:
        if f"cg.{key}.ir" not in kv:
            continue
        reqs = num(f"cg.{key}.n")
        row = {
            "label": label,
            "requests": reqs,
            "instructions_total": num(f"cg.{key}.ir"),
            "instructions_per_request": round(num(f"cg.{key}.ir") / reqs),
            "mallocs_per_request": round(num(f"cg.{key}.mallocs") / reqs, 2),
            "startup_instructions": num(f"cg.{key.split('.')[0]}.startup"),
        }
        out["instructions"][key] = row
        st = row["startup_instructions"]
        p(f"{label:<52} {row['instructions_per_request']:>10,} {row['mallocs_per_request']:>10.2f} {st if st is None else format(int(st), ','):>14}")

    def cgr(a, b):
        x, y = out["instructions"].get(a), out["instructions"].get(b)
        return round(x["instructions_per_request"] / y["instructions_per_request"], 2) if x and y else None

    out["instruction_ratios"] = {
        "ours_proxy / nginx_proxy_pass": cgr("ours.proxy", "nginx.proxy"),
        "ours_verify / nginx_return_200": cgr("ours.verify", "nginx.ret200"),
        "ours_redis / ours_cookie": cgr("ours_redis.proxy", "ours.proxy"),
    }
    p("ratios of instructions per request (lower is better for the first name):")
    for k, v in out["instruction_ratios"].items():
        p(f"  {k:<50} {v if v is not None else 'n/a'}")
    if "perf.ours.proxy" in kv or "perf.note" in kv:
        p(f"perf stat: {kv.get('perf.note', '')}")
        for key in ("ours.proxy", "nginx.proxy"):
            if f"perf.{key}" in kv:
                p(f"  perf {kv.get('perf.event')} per request, {key}: {num('perf.' + key):,.4g}")
                out.setdefault("perf", {})[key] = num("perf." + key)

    p("")
    p(f"-- 3. syscalls per request: strace -f -c attached after warm-up, {n} sequential keep-alive requests --")
    out["syscalls"] = {}
    for key, label in (("ours", "this proxy -> upstream (cookie session)"), ("nginx", "nginx proxy_pass -> upstream (1 process)")):
        if f"st.{key}.total" not in kv:
            continue
        reqs = num(f"st.{key}.n")
        per = {}
        for item in kv.get(f"st.{key}.calls", "").split(","):
            if ":" in item:
                name, c = item.split(":")
                per[name] = round(int(c) / reqs, 2)
        tot = round(num(f"st.{key}.total") / reqs, 2)
        out["syscalls"][key] = {"label": label, "per_request": tot, "by_syscall_per_request": per}
        top = ", ".join(f"{k} {v}" for k, v in list(per.items())[:6])
        p(f"{label:<52} {tot:>6.2f}/req  ({top})")
    a, b = out["syscalls"].get("ours"), out["syscalls"].get("nginx")
    if a and b:
        out["syscall_ratio_ours_nginx"] = round(a["per_request"] / b["per_request"], 2)
        p(f"  ratio ours/nginx: {out['syscall_ratio_ours_nginx']}")

    p("")
    idle_n = m.get("idle_conns")
    if idle_n:
        p(f"-- 4. memory: VmRSS (fresh process; then with {idle_n} idle keep-alive connections, each after one GET /_auth/healthz) --")
    else:
        p("-- 4. memory: VmRSS of a fresh process (idle connections skipped: BENCH_IDLE_CONNS=0) --")
    out["memory_kib"] = {}
    for key, label in (("ours", "this proxy"), ("nginx", "nginx (master_process off: the one worker)")):
        if f"mem.{key}.idle" not in kv:
            continue
        row = {f: num(f"mem.{key}.{f}") for f in ("idle", "after_requests", "conns", "conns_open", "conns_failed", "fds")}
        out["memory_kib"][key] = row
        line = f"{label:<44} idle {row['idle'] / 1024:7.1f} MiB"
        if row["after_requests"] is not None:
            line += f" | after {n} requests {row['after_requests'] / 1024:6.1f} MiB"
        if row["conns"] is not None:
            per = (row["conns"] - (row["after_requests"] or row["idle"])) / max(row["conns_open"] or 1, 1)
            row["kib_per_idle_conn"] = round(per, 2)
            line += f" | {row['conns_open']:.0f} conns {row['conns'] / 1024:7.1f} MiB ({per:.1f} KiB/conn, {row['conns_failed']:.0f} failed)"
        p(line)
    if num("mem.ours_loaded.rss") is not None:
        out["memory_kib"]["ours_after_wrk"] = {"rss": num("mem.ours_loaded.rss"), "hwm": num("mem.ours_loaded.hwm")}
        p(f"{'this proxy after all wrk runs (cookie one)':<44} VmRSS {num('mem.ours_loaded.rss') / 1024:7.1f} MiB, peak (VmHWM) {num('mem.ours_loaded.hwm') / 1024:.1f} MiB")
    if num("meta.elapsed_s") is not None:
        p("")
        p(f"whole run: {num('meta.elapsed_s'):.0f} s; JSON: {jsonpath}")
    with open(jsonpath, "w") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    cmd = sys.argv[1]
    if cmd == "wrk":
        wrk(sys.argv[2])
    elif cmd == "cg":
        cg(sys.argv[2])
    elif cmd == "strace":
        strace(sys.argv[2])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

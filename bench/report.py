#!/usr/bin/env python3
"""Writes bench/RESULTS.md and the PNG plots from bench/results.json (bench/run calls this)."""
import json, os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = os.path.dirname(os.path.abspath(__file__))
R = json.load(open(os.environ.get("MONGOSHIFT_BENCH_RESULTS", os.path.join(HERE, "results.json"))))
OUT_DIR = os.environ.get("MONGOSHIFT_BENCH_REPORT_DIR", HERE)


def fmt(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def round_range(ratios):
    """The per-round ratios' range (each round measures both sides back to back), or a note that there is none."""
    if not ratios:
        return "no per-round ratios recorded"
    return f"rounds {min(ratios):.2f}–{max(ratios):.2f}×"


def bar(path, labels, values, title, xlabel, highlight="mongoshift"):
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(labels)))
    colors = ["#2b7bba" if l == highlight else "#9aa5b1" for l in labels]
    ax.barh(labels[::-1], values[::-1], color=colors[::-1])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for i, v in enumerate(values[::-1]):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT_DIR, path), dpi=110)
    plt.close(fig)


def when(section):
    stamp = R.get("measured", {}).get(section)
    return f" *(measured {stamp})*" if stamp else ""


lines = ["# Benchmark results", "",
         f"This machine: {R['meta']['cpus']} cores, {R['meta']['machine']}, mode `{R['meta']['mode']}`, medians of "
         f"{R['meta']['runs']} interleaved runs. Rewritten by `bench/run` (`--only` reruns a section; each section says when "
         "it was measured). The machine is shared and noisy: compare ratios within one section, not absolute figures across runs.", ""]

ex = R.get("extract")
if ex:
    ref = ex.get("mongoshift", {})
    c = ex.get("C libpq+zstd", {})
    lines += ["## Snapshot extract → spool" + when("extract"), "",
              "`mongoshift snapshot --spool-only` (stage now, apply later) against the hand-written C limit (libpq single-row "
              "SELECT + zstd level 1, `bench/c/pg_extract_zstd.c`), `psql COPY … TO STDOUT`, and the tools users pick instead. "
              "Client CPU is user + system time of the tool's process; machine CPU is every core's busy time during the run "
              "(the tool plus the PostgreSQL backends serving it, from `/proc/stat`); peak RSS from `wait4`.", "",
              "| tool | rows | rows/s | × mongoshift | client CPU µs/row | machine CPU µs/row | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    names = [n for n in ex if not ex[n].get("failed")]
    for n in ex:
        e = ex[n]
        if e.get("failed"):
            lines.append(f"| {n} | {fmt(e['rows'])} | failed | | | | |")
            continue
        ratio = e["rows_per_s"] / ref["rows_per_s"] if ref.get("rows_per_s") else None
        lines.append(f"| {n} | {fmt(e['rows'])} | {fmt(e['rows_per_s'])} | {fmt(ratio, 2)} | {fmt(e['cpu_us_per_row'], 2)} | "
                     f"{fmt(e.get('machine_cpu_us_per_row'), 2)} | {fmt(e['peak_rss_mib'])} |")
    if ref.get("rows_per_s") and c.get("rows_per_s"):
        lines += ["", f"mongoshift reaches **{ref['rows_per_s'] / c['rows_per_s']:.2f}×** the C program's rate (goal ≥ 0.8×; "
                  f"{round_range(ref.get('round_ratios_vs_c'))}) at **{ref['cpu_us_per_row']:.2f} µs/row** client CPU (goal ≤ 2.5)."]
        for other, goal in [("sling", 8), ("dlt", 15)]:
            if ex.get(other, {}).get("rows_per_s"):
                lines.append(f"Against {other}: **{ref['rows_per_s'] / ex[other]['rows_per_s']:.2f}×** (goal ≥ {goal}×).")
        lines.append("Where the gap to the C program comes from, measured: [PROFILE.md](PROFILE.md).")
    lines += ["", "![extract](extract.png)", ""]
    bar("extract.png", names, [ex[n]["rows_per_s"] for n in names], "Snapshot extract → local file", "rows/s")

mem = R.get("memory")
if mem:
    rows = list(mem["by_rows"].keys())
    vals = [mem["by_rows"][r] for r in rows]
    spread = (max(vals) - min(vals)) / min(vals) * 100 if vals else 0
    lines += ["## Memory" + when("memory"), "", "Peak RSS of `snapshot --spool-only` by table size (default `memory_budget` 256 MiB) and by budget at the largest size.", "",
              "| rows | peak RSS MiB |", "|---:|---:|"] + [f"| {int(r):,} | {v:.0f} |" for r, v in zip(rows, vals)]
    lines += ["", f"Spread across sizes: {spread:.0f} % (goal: flat within ± 20 %, ≤ 64 MiB with the default budget).", "",
              "| memory_budget | peak RSS MiB |", "|---|---:|"] + [f"| {b} | {v:.0f} |" for b, v in mem["by_budget"].items()]
    lines += ["", "![memory](memory.png)", ""]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([int(r) for r in rows], vals, marker="o", color="#2b7bba")
    ax.set_ylim(0, max(vals) * 1.5)
    ax.set_xlabel("rows")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title("Peak RSS vs table size")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT_DIR, "memory.png"), dpi=110)
    plt.close(fig)

ap = R.get("apply")
if ap:
    m = ap["mongo_to_pg"]
    lines += ["## Apply throughput" + when("apply"), "",
              "Mongo → PostgreSQL: applying a staged snapshot (`snapshot` after `--spool-only`), postgres path (snapshot pages "
              "COPY straight into the target while their keys are new, otherwise COPY into a stage and INSERT … ON CONFLICT "
              "through the target's `_id` key; checkpoint in the same transaction; the next segment prepared meanwhile) and redshift-dialect path (multi-row INSERT staging, DELETE USING, INSERT), against "
              "PostgreSQL's own `\\copy` into a temp table + `MERGE`.", "", "| path | rows | rows/s | client CPU µs/row |", "|---|---:|---:|---:|"]
    for k, v in m.items():
        lines.append(f"| {k} | {fmt(v.get('rows'))} | {fmt(v.get('rows_per_s'))} | {fmt(v.get('cpu_us_per_row'), 1)} |" if not v.get("failed") else f"| {k} | | failed | |")
    if m.get("postgres", {}).get("rows_per_s") and m.get("COPY + MERGE", {}).get("rows_per_s"):
        ratio = m["postgres"]["rows_per_s"] / m["COPY + MERGE"]["rows_per_s"]
        lines += ["", f"The postgres path reaches **{ratio:.2f}×** COPY + MERGE (goal ≥ 0.7×: **{'met' if ratio >= 0.7 else 'missed'}**; "
                  f"{round_range(m['postgres'].get('round_ratios'))})."]
    p = ap["pg_to_mongo"]
    lines += ["", "Redshift → Mongo: client CPU per row of mongoshift's apply against a minimal libbson/libmongoc bulk loop "
              "(`bench/c/mongo_bulk.c`), same row count, same server. The dev Mongo server (Python) is far slower than mongod, so its "
              "rows/s measure the server, not the client; only client CPU is comparable.", "",
              "| client | rows | client CPU µs/row | rows/s (dev server bound) |", "|---|---:|---:|---:|"]
    for k, v in p.items():
        lines.append(f"| {k} | {fmt(v.get('rows'))} | {fmt(v.get('cpu_us_per_row'), 1)} | {fmt(v.get('rows_per_s'))} |")
    if p.get("mongoshift", {}).get("cpu_us_per_row") and p.get("C libbson bulk", {}).get("cpu_us_per_row"):
        ratio = p["mongoshift"]["cpu_us_per_row"] / p["C libbson bulk"]["cpu_us_per_row"]
        lines += ["", f"mongoshift's client CPU is **{ratio:.2f}×** the C loop's (goal ≤ 1.3×: **{'met' if ratio <= 1.3 else 'missed'}**; "
                  f"{round_range(p['mongoshift'].get('round_ratios'))})."]
    lines.append("")

lat = R.get("latency")
if lat:
    lines += ["## Incremental latency" + when("latency"), "",
              f"- Empty poll (one indexed `(updated_at, id)` query over the {'5M' if R['meta']['mode'] == 'full' else '500k'}-row table): "
              f"p50 **{fmt(lat['empty_poll_ms'].get('p50'), 1)} ms**, max {fmt(lat['empty_poll_ms'].get('max'), 1)} ms (goal ≤ 50 ms).",
              f"- 10,000 changed rows, PostgreSQL → Mongo (dev server): **{fmt(lat.get('changed_rows_r2m_s'), 2)} s**.",
              f"- 10,000 changed documents, Mongo → PostgreSQL: **{fmt(lat.get('changed_rows_m2r_s'), 2)} s** from the start of the bulk "
              f"write ({fmt(lat.get('changed_rows_m2r_after_write_s'), 2)} s after it returned; goal ≤ 1 s).", ""]
    lines += ["Lag under a steady writer of 2,000 rows/s (10 batches of 200 a second on their own connection, on a fixed "
              "schedule; each batch timed from its commit until its last key is seen in the target: a change stream on the "
              "Mongo collection, `max(_id)` polled in PostgreSQL). `poll_interval` 200 ms; PostgreSQL → Mongo with "
              "`safety_lag: 250ms`, late commits left to the transaction bound (docs/CONFIG.md, \"Late commits\"):", "",
              "| direction | p50 s | p99 s | max s | batches | writer rows/s reached |", "|---|---:|---:|---:|---:|---:|"]
    for k, name in [("lag_r2m", "PostgreSQL → Mongo"), ("lag_m2r", "Mongo → PostgreSQL")]:
        v = lat.get(k, {})
        lines.append(f"| {name} | {fmt(v.get('p50'), 2)} | {fmt(v.get('p99'), 2)} | {fmt(v.get('max'), 2)} | {fmt(v.get('samples'))} | "
                     f"{fmt(v.get('writer_rows_per_s'))} |")
    goal = 1.2
    met = all((lat.get(k, {}).get("p99") or 99) <= goal for k in ("lag_r2m", "lag_m2r"))
    lines += ["", f"Goal: p99 ≤ poll interval + 1 s = {goal} s, both directions: **{'met' if met else 'missed'}**. Both figures include "
              "the dev servers' own apply time (the Mongo one is a single-threaded Python process)."
              + (f" Note: {R['meta']['note']}." if R["meta"].get("note") else ""), ""]

rs = R.get("redshift")
if rs:
    a, sn = rs["apply"], rs["snapshot"]
    base = a.get("COPY + MERGE", {}).get("rows_per_s")
    lines += ["## Redshift paths, against the stand-in" + when("redshift"), "",
              "**Measured against `ops/dev-redshift` and its S3 emulator (moto), not Amazon Redshift.** The stand-in is a Python "
              "proxy: it parses, checks and converts every COPY value and formats every UNLOAD row itself, so wall times here "
              "measure mostly the stand-in. Client CPU (mongoshift's own user + system time) is the comparable figure.", "",
              "Mongo → Redshift apply of the same staged 100k-document spool (`snapshot` after `--spool-only`): multi-row INSERTs "
              "(`load: insert`), COPY from zstd JSON files in S3 (`load: copy`), and PostgreSQL's own `\\copy` + `MERGE` of "
              "the same rows directly on the backend as the baseline.", "",
              "| path | rows/s | × COPY + MERGE | client CPU µs/row | peak RSS MiB |", "|---|---:|---:|---:|---:|"]
    for k in ["insert", "copy", "COPY + MERGE"]:
        v = a.get(k, {})
        if v.get("failed"):
            lines.append(f"| {k} | failed | | | |")
            continue
        lines.append(f"| {k} | {fmt(v.get('rows_per_s'))} | {fmt(v['rows_per_s'] / base if base else None, 2)} | "
                     f"{fmt(v.get('cpu_us_per_row'), 1)} | {fmt(v.get('rss_mib'))} |")
    sizes = sorted(sn, key=int)
    lines += ["", "Redshift → spool snapshot (`snapshot --spool-only`, 8 partitions) of a Redshift-made table with an informational "
              "key and no index — as on Redshift, where each keyset page (`extract: select`) re-reads the rest of its "
              "partition — against `extract: unload` (one UNLOAD per partition, files read one at a time):", "",
              "| extract | " + " | ".join(f"{int(n):,} rows s" for n in sizes) + f" | growth {int(sizes[-1]) // int(sizes[0])}× rows | "
              "client CPU µs/row | peak RSS MiB |", "|---|" + "---:|" * (len(sizes) + 3)]
    for k in ["select", "unload"]:
        vals = [sn[n].get(k, {}) for n in sizes]
        secs = [v.get("seconds") for v in vals]
        growth = secs[-1] / secs[0] if all(secs) else None
        lines.append(f"| {k} | " + " | ".join(fmt(x, 1) for x in secs) + f" | **{fmt(growth, 1)}×** | "
                     f"{fmt(vals[-1].get('cpu_us_per_row'), 2)} | {fmt(max(v.get('rss_mib') or 0 for v in vals))} |")
    ug = [sn[n].get("unload", {}).get("seconds") for n in sizes]
    ugrowth = ug[-1] / ug[0] if all(ug) else None
    urss = max(sn[n].get("unload", {}).get("rss_mib") or 0 for n in sizes)
    lines += ["", "Goals (issue \"Redshift at warehouse scale\"): UNLOAD snapshot time linear in rows, 5M ≤ 5.5× 1M — "
              f"**{fmt(ugrowth, 1)}×, {'met' if ugrowth and ugrowth <= 5.5 else 'missed'}** (one run per size: the wall time is the "
              "Python stand-in formatting and serving every row, and varies with it; keyset pages grow like the square); "
              f"peak RSS ≤ 64 MiB — **{fmt(urss)} MiB, {'met' if urss <= 64 else 'missed'}** (files are streamed from disk, pages "
              "compressed as they fill); apply by COPY ≥ 0.7× COPY + MERGE — **not measurable "
              "here**: the stand-in's Python COPY is the bottleneck, so the ratio above is the stand-in's, not Redshift's. What "
              "only a real cluster can show: COPY's parallel load across slices and UNLOAD's parallel export, which this "
              "stand-in runs on one core.", ""]

open(os.path.join(OUT_DIR, "RESULTS.md"), "w").write("\n".join(lines) + "\n")
print("wrote bench/RESULTS.md")

#!/usr/bin/env python3
"""mongoshift benchmarks (issue 7): snapshot extract -> spool against the hand-written C limit and the tools
users would pick instead; memory flatness; apply throughput; incremental latency.

Every figure is measured in this run, tools interleaved round by round, medians of --runs. Child resource use
comes from wait4(): wall time, user+system CPU, peak RSS. Benchmarks never fail on speed; they report.
bench/run sets the environment (servers, binaries, venv) and calls this, then bench/report.py."""
import argparse, json, os, resource, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
PG = os.environ["MONGOSHIFT_TEST_PG"]
MONGO = os.environ["MONGOSHIFT_TEST_MONGO"]
BIN = os.environ.get("MONGOSHIFT_BENCH_BIN", os.path.join(ROOT, ".build", "release", "mongoshift"))
CBIN = os.path.join(OUT, "bin")
VENV = os.path.join(ROOT, ".venv-bench", "bin")
TMP = tempfile.mkdtemp(prefix="mongoshift-bench-")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def machine_busy_s():
    """CPU seconds every core spent busy since boot (/proc/stat): over a run, the tool's and the servers' together."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(cmd, env=None, stdout_path=None, timeout=3600):
    """Runs cmd to completion; returns wall s, cpu s (user+sys), busy s of the whole machine (the tool plus the
    servers it talks to), peak RSS MiB, exit code, stdout text."""
    out = open(stdout_path or os.path.join(TMP, "stdout"), "wb")
    err = open(os.path.join(TMP, "stderr"), "wb")
    full_env = dict(os.environ, **(env or {}))
    start = time.monotonic()
    busy = machine_busy_s()
    p = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env)
    timer = threading.Timer(timeout, lambda: p.kill())
    timer.start()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    wall = time.monotonic() - start
    busy = machine_busy_s() - busy
    p.returncode = os.waitstatus_to_exitcode(status)
    out.close(); err.close()
    text = open(out.name, "rb").read().decode(errors="replace") if stdout_path is None else ""
    if p.returncode != 0:
        log("FAILED", " ".join(cmd[:3]), p.returncode, open(err.name, "rb").read().decode(errors="replace")[-800:])
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "busy": busy, "rss_mib": ru.ru_maxrss / 1024, "rc": p.returncode, "stdout": text}


def psql(sql, url=PG):
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def median(xs):
    return statistics.median(xs) if xs else None


def round_ratios(a, b, of):
    """Per-round ratios of `of(a[i]) / of(b[i])` (the two measured back to back in round i): the spread the median hides."""
    return [of(x) / of(y) for x, y in zip(a, b) if of(y)]


# ---------------------------------------------------------------------------------------------- data

def ensure_orders(rows):
    """The 13-column orders table (bigint key, timestamptz, ints, numerics, short/medium text, booleans, json)."""
    have = psql("SELECT count(*) FROM pg_tables WHERE tablename = 'bench_orders'")
    if have == "1" and psql("SELECT coalesce(max(id), 0) FROM bench_orders") == str(rows):
        return
    log(f"generating bench_orders with {rows:,} rows")
    psql("DROP TABLE IF EXISTS bench_orders CASCADE")
    psql("""CREATE TABLE bench_orders (id bigint PRIMARY KEY, customer_id integer NOT NULL, quantity smallint NOT NULL,
            amount numeric(12,2) NOT NULL, tax numeric(10,4), status varchar(16) NOT NULL, note varchar(200),
            description text, paid boolean NOT NULL, gift boolean, created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL, attrs json)""")
    step = 1_000_000
    for lo in range(1, rows + 1, step):
        hi = min(rows, lo + step - 1)
        psql(f"""INSERT INTO bench_orders SELECT g, g % 9973, (g % 100)::smallint, round((g % 100000) * 1.37, 2),
                 CASE WHEN g % 9 = 0 THEN NULL ELSE round((g % 1000) * 0.0123, 4) END,
                 (ARRAY['new','paid','shipped','delivered','returned'])[g % 5 + 1],
                 CASE WHEN g % 7 = 0 THEN NULL ELSE 'note for order ' || g END,
                 repeat('lorem ipsum dolor sit amet ', 1 + g % 6), g % 2 = 0, CASE WHEN g % 11 = 0 THEN NULL ELSE g % 3 = 0 END,
                 timestamptz '2024-01-01 00:00:00+00' + g * interval '7 seconds',
                 timestamptz '2024-01-01 00:00:00+00' + g * interval '7 seconds',
                 json_build_object('channel', (ARRAY['web','app','store'])[g % 3 + 1], 'items', g % 5 + 1)
                 FROM generate_series({lo}, {hi}) g""")
    psql("CREATE INDEX bench_orders_wm ON bench_orders (updated_at, id)")
    psql("VACUUM ANALYZE bench_orders")


def view(rows):
    name = f"bench_orders_{rows}"
    psql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM bench_orders WHERE id <= {rows}")
    return name


def config(path, table, extra_defaults="", collection="orders", database="bench", key=True, safety_lag="60s"):
    state = os.path.join(TMP, "state-" + os.path.basename(path).replace(".yaml", ""))
    shutil.rmtree(state, ignore_errors=True)
    text = f"""state: {state}
redshift: {{ url: "{PG}", dialect: postgres }}
mongo: {{ url: "{MONGO}", database: {database} }}
defaults: {{ poll_interval: 200ms{extra_defaults} }}
streams:
  - name: s
    from: {{ table: public.{table} }}
    to: {{ collection: {collection} }}
    key: [id]
    watermark: updated_at
    safety_lag: {safety_lag}
"""
    open(path, "w").write(text)
    return state


# ---------------------------------------------------------------------------------------------- 1. extract

def extract_tools(rows, slow_rows):
    """name -> (rows, command factory). The slow tools read smaller tables (dlt smaller still: ~1,500 rows/s
    here); rows/s and µs/row are per-row rates either way."""
    # The fast tools read the whole table (`rows` is its size), as a snapshot does: a table, whose primary key
    # PostgreSQL enforces, so mongoshift skips its duplicate-key scan (a view would need it). The slow ones read views.
    big, small, tiny = "bench_orders", view(slow_rows), view(slow_rows // 5)
    conninfo = PG
    tools = {}

    def mongoshift():
        cfg = os.path.join(TMP, "extract.yaml")
        state = config(cfg, big)
        return ["sh", "-c", f"rm -rf {state} && exec {BIN} snapshot --spool-only --config {cfg} --log-format json"]
    tools["mongoshift"] = (rows, mongoshift)
    tools["C libpq+zstd"] = (rows, lambda: [os.path.join(CBIN, "pg_extract_zstd"), conninfo, f"SELECT * FROM {big}", os.path.join(TMP, "c.out")])
    tools["psql COPY"] = (rows, lambda: ["sh", "-c", f"psql '{conninfo}' -qc 'COPY (SELECT * FROM {big}) TO STDOUT' > /dev/null"])
    if os.path.exists(os.path.join(VENV, "sling")):
        tools["sling"] = (slow_rows, lambda: [os.path.join(VENV, "sling"), "run", "--src-conn", "BENCHPG", "--src-stream", f"public.{small}",
                                              "--tgt-object", f"file://{TMP}/sling.csv"])
    tools["dlt"] = (slow_rows // 5, lambda: [os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "tools", "dlt_extract.py"), conninfo, tiny, TMP])
    tools["pandas"] = (slow_rows, lambda: [os.path.join(VENV, "python"), os.path.join(ROOT, "bench", "tools", "pandas_extract.py"), conninfo, small])
    return tools


def bench_extract(rows, slow_rows, runs):
    tools = extract_tools(rows, slow_rows)
    env = {"BENCHPG": PG.replace("postgresql://", "postgres://") + ("&" if "?" in PG else "?") + "sslmode=disable", "DLT_TELEMETRY": "false",
           "RUNTIME__DLTHUB_TELEMETRY": "false", "SLING_DISABLE_TELEMETRY": "true"}
    samples = {name: [] for name in tools}
    for r in range(runs):
        for name, (n, factory) in tools.items():
            res = measure(factory(), env=env)
            if res["rc"] == 0:
                samples[name].append(res)
            log(f"extract run {r + 1}/{runs} {name}: {n / res['wall']:,.0f} rows/s, {res['cpu'] / n * 1e6:.2f} µs/row, {res['rss_mib']:.0f} MiB rc={res['rc']}")
    out = {}
    for name, (n, _) in tools.items():
        s = samples[name]
        if not s:
            out[name] = {"rows": n, "failed": True}
            continue
        out[name] = {"rows": n, "rows_per_s": median([n / x["wall"] for x in s]), "cpu_us_per_row": median([x["cpu"] / n * 1e6 for x in s]),
                     "machine_cpu_us_per_row": median([x["busy"] / n * 1e6 for x in s]),
                     "peak_rss_mib": median([x["rss_mib"] for x in s]), "wall_s": median([x["wall"] for x in s]), "runs": len(s)}
    if samples.get("mongoshift") and samples.get("C libpq+zstd"):
        # rows/s ratio per round: C wall / mongoshift wall (same row count).
        out["mongoshift"]["round_ratios_vs_c"] = round_ratios(samples["C libpq+zstd"], samples["mongoshift"], lambda x: x["wall"])
    return out


# ---------------------------------------------------------------------------------------------- 2. memory

def bench_memory(sizes, runs):
    out = {"by_rows": {}, "by_budget": {}}
    for rows in sizes:
        v = view(rows)
        vals = []
        for _ in range(runs):
            cfg = os.path.join(TMP, "mem.yaml")
            state = config(cfg, v)
            res = measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"])
            shutil.rmtree(state, ignore_errors=True)
            vals.append(res["rss_mib"])
        out["by_rows"][str(rows)] = median(vals)
        log(f"memory {rows:,} rows: peak RSS {median(vals):.0f} MiB")
    biggest = view(sizes[-1])
    for budget in ["64MiB", "256MiB"]:
        vals = []
        for _ in range(runs):
            cfg = os.path.join(TMP, "mem.yaml")
            state = config(cfg, biggest, extra_defaults=f", memory_budget: {budget}")
            res = measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"])
            shutil.rmtree(state, ignore_errors=True)
            vals.append(res["rss_mib"])
        out["by_budget"][budget] = median(vals)
        log(f"memory budget {budget} at {sizes[-1]:,} rows: peak RSS {median(vals):.0f} MiB")
    return out


# ---------------------------------------------------------------------------------------------- 3. apply

def mongo_apply_config(path, table, dialect, database):
    state = os.path.join(TMP, "state-apply")
    text = f"""state: {state}
redshift: {{ url: "{PG}", dialect: {dialect} }}
mongo: {{ url: "{MONGO}", database: {database} }}
streams:
  - name: a
    from: {{ collection: seed }}
    to: {{ table: {table} }}
"""
    open(path, "w").write(text)
    return state


def bench_apply(rows, runs):
    out = {}
    db = "bench_apply"
    subprocess.run([os.path.join(CBIN, "mongo_bulk"), MONGO, db, "seed", str(rows)], check=True, capture_output=True)
    # Mongo -> PostgreSQL: stage the collection once, then time applying the staged spool (copies of it).
    results = {"postgres": [], "redshift": [], "COPY + MERGE": []}
    staged = {}
    for dialect in ["postgres", "redshift"]:
        cfg = os.path.join(TMP, f"apply-{dialect}.yaml")
        state = mongo_apply_config(cfg, f"bench_apply.t_{dialect}", dialect, db)
        shutil.rmtree(state, ignore_errors=True)
        res = measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"])
        staged[dialect] = (cfg, state, os.path.join(TMP, f"staged-{dialect}"))
        shutil.rmtree(staged[dialect][2], ignore_errors=True)
        shutil.copytree(state, staged[dialect][2])
    psql("CREATE SCHEMA IF NOT EXISTS bench_apply")
    # The redshift dialect uses Redshift's GETDATE(), SUPER/JSON_PARSE and VARBYTE/FROM_HEX; PostgreSQL lacks them,
    # so stand equivalents in (the SQL mongoshift sends is unchanged).
    psql("CREATE OR REPLACE FUNCTION getdate() RETURNS timestamp LANGUAGE sql AS 'SELECT now()::timestamp'")
    psql("DO $$ BEGIN CREATE DOMAIN super AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    psql("DO $$ BEGIN CREATE DOMAIN varbyte AS bytea; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    psql("CREATE OR REPLACE FUNCTION json_parse(text) RETURNS jsonb LANGUAGE sql AS 'SELECT $1::jsonb'")
    psql("CREATE OR REPLACE FUNCTION from_hex(text) RETURNS bytea LANGUAGE sql AS 'SELECT decode($1, ''hex'')'")
    csv = os.path.join(TMP, "apply.csv")
    for r in range(runs):
        for dialect in ["postgres", "redshift"]:
            cfg, state, copy = staged[dialect]
            psql(f"DROP TABLE IF EXISTS bench_apply.t_{dialect}; DROP TABLE IF EXISTS bench_apply.mongoshift_checkpoints")
            shutil.rmtree(state, ignore_errors=True)
            shutil.copytree(copy, state)
            res = measure([BIN, "snapshot", "--config", cfg, "--log-format", "json"])
            if res["rc"] == 0:
                results[dialect].append(res)
            log(f"apply run {r + 1} mongo→pg {dialect}: {rows / res['wall']:,.0f} rows/s rc={res['rc']}")
        # The PostgreSQL-native baseline: COPY the same rows into a staging table, MERGE into the target.
        if r == 0:
            subprocess.run(["sh", "-c", f"psql '{PG}' -qc \"\\copy bench_apply.t_postgres TO '{csv}' WITH (FORMAT csv)\""], check=True)
        psql("DROP TABLE IF EXISTS bench_apply.merged; CREATE TABLE bench_apply.merged (LIKE bench_apply.t_postgres); ALTER TABLE bench_apply.merged ADD PRIMARY KEY (_id)")
        cols = psql("SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema='bench_apply' AND table_name='t_postgres'")
        sets = ",".join(f"{c}=s.{c}" for c in cols.split(",") if c != "_id")
        script = (f"BEGIN; CREATE TEMP TABLE stage (LIKE bench_apply.t_postgres) ON COMMIT DROP; \\copy stage FROM '{csv}' WITH (FORMAT csv)\n"
                  f"MERGE INTO bench_apply.merged t USING stage s ON t._id = s._id WHEN MATCHED THEN UPDATE SET {sets} "
                  f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({','.join('s.' + c for c in cols.split(','))}); COMMIT;")
        sql_file = os.path.join(TMP, "merge.sql")
        open(sql_file, "w").write(script)
        res = measure(["psql", PG, "-v", "ON_ERROR_STOP=1", "-qf", sql_file])
        if res["rc"] == 0:
            results["COPY + MERGE"].append(res)
        log(f"apply run {r + 1} COPY+MERGE: {rows / res['wall']:,.0f} rows/s")
    out["mongo_to_pg"] = {k: {"rows": rows, "rows_per_s": median([rows / x["wall"] for x in v]),
                              "cpu_us_per_row": median([x["cpu"] / rows * 1e6 for x in v])} if v else {"failed": True}
                          for k, v in results.items()}
    if results["postgres"] and results["COPY + MERGE"]:
        out["mongo_to_pg"]["postgres"]["round_ratios"] = round_ratios(results["COPY + MERGE"], results["postgres"], lambda x: x["wall"])
    # Redshift -> Mongo client CPU: mongoshift's apply of a staged snapshot vs the libbson bulk loop.
    v = view(rows)
    cfg = os.path.join(TMP, "r2m-apply.yaml")
    mongo_cpu, c_cpu = [], []
    for r in range(runs):
        state = config(cfg, v, collection=f"r2m_{r}", database="bench_r2m")
        measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"])
        res = measure([BIN, "snapshot", "--config", cfg, "--log-format", "json"])
        if res["rc"] == 0:
            mongo_cpu.append(res)
        res_c = measure([os.path.join(CBIN, "mongo_bulk"), MONGO, "bench_r2m", f"c_{r}", str(rows)])
        if res_c["rc"] == 0:
            c_cpu.append(res_c)
        log(f"apply run {r + 1} pg→mongo: mongoshift {res['cpu'] / rows * 1e6:.1f} µs/row, C {res_c['cpu'] / rows * 1e6:.1f} µs/row")
    out["pg_to_mongo"] = {
        "mongoshift": {"rows": rows, "cpu_us_per_row": median([x["cpu"] / rows * 1e6 for x in mongo_cpu]), "rows_per_s": median([rows / x["wall"] for x in mongo_cpu])},
        "C libbson bulk": {"rows": rows, "cpu_us_per_row": median([x["cpu"] / rows * 1e6 for x in c_cpu]), "rows_per_s": median([rows / x["wall"] for x in c_cpu])},
    }
    out["pg_to_mongo"]["mongoshift"]["round_ratios"] = round_ratios(mongo_cpu, c_cpu, lambda x: x["cpu"])
    return out


# ---------------------------------------------------------------------------------------------- 4. latency

def pymongo_client():
    import pymongo
    return pymongo.MongoClient(MONGO.split("?")[0], directConnection=True, socketTimeoutMS=120_000, serverSelectionTimeoutMS=120_000)


def bench_latency(steady_seconds, changed_rows):
    import psycopg2
    out = {}
    # Redshift -> Mongo over a 20,000-row view of the big table (the poll still walks the big index).
    v = view(20_000)
    cfg = os.path.join(TMP, "latency-r2m.yaml")
    # safety_lag 250 ms: what a user who wants low lag configures, leaving late commits to the transaction bound
    # (docs/CONFIG.md, "Late commits"; the default 60 s also covers writers that stamp long before they write).
    config(cfg, v, collection="lat", database="bench_lat", safety_lag="250ms")
    mc = pymongo_client()
    mc.drop_database("bench_lat")
    daemon = subprocess.Popen([BIN, "run", "--config", cfg, "--log-format", "json", "--log-level", "debug", "--metrics-addr", "off"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(TMP, "run-r2m.log"), "wb"))
    try:
        coll = mc.bench_lat.lat
        deadline = time.time() + 600
        while coll.count_documents({}) < 20_000 and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)
        polls = [float(json.loads(l)["ms"]) for l in open(os.path.join(TMP, "run-r2m.log")) if '"polled"' in l]
        out["empty_poll_ms"] = {"p50": median(polls[-20:]), "max": max(polls[-20:]) if polls else None, "samples": len(polls[-20:])}
        log(f"empty poll: {out['empty_poll_ms']}")
        conn = psycopg2.connect(PG)
        conn.autocommit = True
        cur = conn.cursor()
        t0 = time.time()
        cur.execute(f"UPDATE bench_orders SET note = 'changed', updated_at = now() WHERE id <= {changed_rows}")
        while coll.count_documents({"_id": {"$in": [1, changed_rows // 2, changed_rows]}, "note": "changed"}) < 3:
            time.sleep(0.02)
        # One statement's rows share one updated_at and are read and applied in key order, so the last key's arrival
        # bounds the batch (a full $in over 10,000 ids is too slow for the dev server to answer).
        out["changed_rows_r2m_s"] = time.time() - t0
        log(f"{changed_rows:,} changed rows pg→mongo: {out['changed_rows_r2m_s']:.2f} s")
        out["lag_r2m"] = steady_lag_pg_to_mongo(cur, coll, steady_seconds)
        log(f"steady lag pg→mongo: {out['lag_r2m']}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    # Mongo -> PostgreSQL.
    db = mc.bench_lat2
    mc.drop_database("bench_lat2")
    db.src.insert_many([{"_id": i, "name": f"app {i}", "n": i} for i in range(1, 20_001)])
    cfg = os.path.join(TMP, "latency-m2r.yaml")
    state = os.path.join(TMP, "state-m2r")
    shutil.rmtree(state, ignore_errors=True)
    psql("DROP SCHEMA IF EXISTS bench_lat CASCADE")
    open(cfg, "w").write(f"""state: {state}
redshift: {{ url: "{PG}", dialect: postgres }}
mongo: {{ url: "{MONGO}", database: bench_lat2 }}
defaults: {{ poll_interval: 200ms }}
streams:
  - name: m
    from: {{ collection: src }}
    to: {{ table: bench_lat.src }}
""")
    daemon = subprocess.Popen([BIN, "run", "--config", cfg, "--log-format", "json", "--metrics-addr", "off"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(TMP, "run-m2r.log"), "wb"))
    try:
        conn = psycopg2.connect(PG)
        conn.autocommit = True
        cur = conn.cursor()
        def count(sql):
            try:
                cur.execute(sql)
                return cur.fetchone()[0]
            except psycopg2.Error:
                return 0
        deadline = time.time() + 600
        while count("SELECT count(*) FROM bench_lat.src") < 20_000 and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        from pymongo import UpdateOne
        t0 = time.time()
        db.src.bulk_write([UpdateOne({"_id": i}, {"$set": {"name": "changed"}}) for i in range(1, changed_rows + 1)], ordered=False)
        t_written = time.time()
        while count("SELECT count(*) FROM bench_lat.src WHERE name = 'changed'") < changed_rows:
            time.sleep(0.02)
        out["changed_rows_m2r_s"] = time.time() - t0
        out["changed_rows_m2r_after_write_s"] = time.time() - t_written
        log(f"{changed_rows:,} changed docs mongo→pg: {out['changed_rows_m2r_s']:.2f} s ({out['changed_rows_m2r_after_write_s']:.2f} s after the bulk write returned)")
        out["lag_m2r"] = steady_lag_mongo_to_pg(db.src, cur, steady_seconds)
        log(f"steady lag mongo→pg: {out['lag_m2r']}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    return out


def percentiles(lags):
    lags = sorted(lags)
    if not lags:
        return {}
    pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
    return {"p50": pick(0.50), "p99": pick(0.99), "max": lags[-1], "samples": len(lags)}


class SteadyWriter(threading.Thread):
    """Writes `rate` rows/s as 10 batches a second on its own connection, on a fixed schedule (a late batch never
    delays the next one's start time), recording each batch's last key and commit time. The observer runs
    separately, so waiting on the target never slows the writer."""

    def __init__(self, write_batch, first_id, seconds, rate=2000):
        super().__init__(daemon=True)
        self.write_batch, self.next_id, self.seconds, self.per = write_batch, first_id, seconds, rate // 10
        self.batches = []  # (last id, commit time)
        self.lock = threading.Lock()
        self.done = False

    def run(self):
        start = time.time()
        k = 0
        while time.time() < start + self.seconds:
            due = start + k * 0.1
            if time.time() < due:
                time.sleep(due - time.time())
            self.write_batch(self.next_id, self.next_id + self.per - 1)
            with self.lock:
                self.batches.append((self.next_id + self.per - 1, time.time()))
            self.next_id += self.per
            k += 1
        self.elapsed = time.time() - start
        self.done = True

    def rows_per_s(self):
        return len(self.batches) * self.per / self.elapsed


def observe(writer, arrived_up_to, grace=120):
    """Times each batch from its commit to the moment its last key is seen in the target. `arrived_up_to()` returns
    the keys seen since the last call (or the largest key present), polled every 20 ms."""
    lags, index = [], 0
    seen = set()
    deadline = None
    while True:
        with writer.lock:
            batches = list(writer.batches)
        got = arrived_up_to()
        now = time.time()
        if isinstance(got, set):
            seen |= got
            while index < len(batches) and batches[index][0] in seen:
                lags.append(now - batches[index][1])
                index += 1
        else:
            while index < len(batches) and got is not None and got >= batches[index][0]:
                lags.append(now - batches[index][1])
                index += 1
        if writer.done and index >= len(batches):
            break
        if writer.done:
            deadline = deadline or now + grace
            if now > deadline:
                break
        time.sleep(0.02)
    return lags


def steady_lag_pg_to_mongo(cur, coll, seconds, rate=2000):
    """Batches inserted into PostgreSQL; each batch's last key is watched arriving through a change stream on the
    target collection (no per-batch queries against the single-threaded dev server)."""
    import psycopg2
    cur.execute("SELECT max(id) FROM bench_orders")
    next_id = cur.fetchone()[0] + 1
    cur.execute(f"CREATE OR REPLACE VIEW bench_orders_20000 AS SELECT * FROM bench_orders WHERE id <= 20000 OR id >= {next_id}")
    conn = psycopg2.connect(PG)
    conn.autocommit = True
    wcur = conn.cursor()

    def write(lo, hi):
        wcur.execute(f"""INSERT INTO bench_orders SELECT g, 1, 1, 1.00, NULL, 'new', 'steady', 'x', true, NULL, now(), now(), '{{}}'
                         FROM generate_series({lo}, {hi}) g""")
    stream = coll.watch(max_await_time_ms=20)
    writer = SteadyWriter(write, next_id, seconds, rate)
    writer.start()

    def arrived():
        keys = set()
        while True:
            event = stream.try_next()
            if event is None:
                return keys
            keys.add(event["documentKey"]["_id"])
    lags = observe(writer, arrived)
    stream.close()
    conn.close()
    return dict(percentiles(lags), writer_rows_per_s=writer.rows_per_s())


def steady_lag_mongo_to_pg(coll, cur, seconds, rate=2000):
    """Batches inserted into Mongo by their own client; the target's largest key is polled in PostgreSQL."""
    wcoll = pymongo_client()[coll.database.name][coll.name]

    def write(lo, hi):
        wcoll.insert_many([{"_id": i, "name": "steady", "n": i} for i in range(lo, hi + 1)], ordered=False)
    writer = SteadyWriter(write, 1_000_001, seconds, rate)
    writer.start()

    def arrived():
        cur.execute("SELECT coalesce(max(_id), 0) FROM bench_lat.src")
        return cur.fetchone()[0]
    lags = observe(writer, arrived)
    return dict(percentiles(lags), writer_rows_per_s=writer.rows_per_s())


# ---------------------------------------------------------------------------------------------- main


# ---------------------------------------------------------------------------------------------- 5. Redshift bulk paths
# Against ops/dev-redshift and its S3 emulator (moto): a PostgreSQL behind a Python proxy, so absolute figures say
# nothing about a cluster. What they show is how each path grows with the table and what it costs the client.

RS = os.environ.get("MONGOSHIFT_TEST_REDSHIFT")
S3_ENDPOINT = os.environ.get("MONGOSHIFT_TEST_S3_ENDPOINT")
S3_BUCKET = os.environ.get("MONGOSHIFT_TEST_S3_BUCKET")


def rs_config(path, stream_yaml, database, s3_prefix):
    state = path + ".state"
    text = f"""state: {state}
redshift:
  url: "{RS}"
  dialect: redshift
  s3: {{ bucket: {S3_BUCKET}, prefix: {s3_prefix}, endpoint: "{S3_ENDPOINT}" }}
mongo: {{ url: "{MONGO}", database: {database} }}
streams:
{stream_yaml}
"""
    open(path, "w").write(text)
    return state


def bench_redshift_apply(rows, runs):
    """Mongo -> Redshift apply of the same staged spool: multi-row INSERTs, COPY from S3, and PostgreSQL's own
    COPY + MERGE of the same rows as the baseline."""
    db = "bench_rs_apply"
    subprocess.run([os.path.join(CBIN, "mongo_bulk"), MONGO, db, "seed", str(rows)], check=True, capture_output=True)
    results = {"insert": [], "copy": [], "COPY + MERGE": []}
    staged = {}
    for load in ["insert", "copy"]:
        cfg = os.path.join(TMP, f"rs-apply-{load}.yaml")
        state = rs_config(cfg, f"  - name: a\n    from: {{ collection: seed }}\n    to: {{ table: bench_rs.t_{load} }}\n    load: {load}\n", db, "bench-apply/")
        shutil.rmtree(state, ignore_errors=True)
        measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"])
        staged[load] = (cfg, state, state + ".copy")
        shutil.rmtree(state + ".copy", ignore_errors=True)
        shutil.copytree(state, state + ".copy")
    csv = os.path.join(TMP, "rs-apply.csv")
    for r in range(runs):
        for load in ["insert", "copy"]:
            cfg, state, copy = staged[load]
            psql(f"DROP TABLE IF EXISTS bench_rs.t_{load}; DROP TABLE IF EXISTS bench_rs.mongoshift_checkpoints", url=RS)
            shutil.rmtree(state, ignore_errors=True)
            shutil.copytree(copy, state)
            res = measure([BIN, "snapshot", "--config", cfg, "--log-format", "json"])
            if res["rc"] == 0:
                results[load].append(res)
            log(f"redshift apply run {r + 1} load={load}: {rows / res['wall']:,.0f} rows/s, {res['cpu'] / rows * 1e6:.1f} µs/row client CPU, rc={res['rc']}")
        # Baseline: the same rows, PostgreSQL-native COPY into a temp table and MERGE into a keyed table.
        if r == 0:
            subprocess.run(["sh", "-c", f"psql '{PG}' -qc \"\\copy bench_rs.t_copy TO '{csv}' WITH (FORMAT csv)\""], check=True)
        psql("DROP TABLE IF EXISTS bench_rs.merged; CREATE TABLE bench_rs.merged (LIKE bench_rs.t_copy); ALTER TABLE bench_rs.merged ADD PRIMARY KEY (_id)")
        cols = psql("SELECT string_agg(quote_ident(column_name), ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema='bench_rs' AND table_name='t_copy'")
        sets = ",".join(f"{c}=s.{c}" for c in cols.split(",") if c != "_id")
        script = (f"BEGIN; CREATE TEMP TABLE stage (LIKE bench_rs.t_copy) ON COMMIT DROP; \\copy stage FROM '{csv}' WITH (FORMAT csv)\n"
                  f"MERGE INTO bench_rs.merged t USING stage s ON t._id = s._id WHEN MATCHED THEN UPDATE SET {sets} "
                  f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({','.join('s.' + c for c in cols.split(','))}); COMMIT;")
        sql_file = os.path.join(TMP, "rs-merge.sql")
        open(sql_file, "w").write(script)
        res = measure(["psql", PG, "-v", "ON_ERROR_STOP=1", "-qf", sql_file])
        if res["rc"] == 0:
            results["COPY + MERGE"].append(res)
        log(f"redshift apply run {r + 1} PostgreSQL COPY+MERGE: {rows / res['wall']:,.0f} rows/s")
    return {k: {"rows": rows, "rows_per_s": median([rows / x["wall"] for x in v]), "cpu_us_per_row": median([x["cpu"] / rows * 1e6 for x in v]),
                "rss_mib": median([x["rss_mib"] for x in v])} if v else {"failed": True} for k, v in results.items()}


def rs_snapshot_table(rows):
    """A Redshift-made table (informational key, no index, no sort key) of `rows` rows, filled on the backend."""
    name = f"bench_rs_snap_{rows}"
    if psql(f"SELECT count(*) FROM pg_tables WHERE tablename = '{name}'") == "1" and psql(f"SELECT count(*) FROM public.{name}") == str(rows):
        return name
    log(f"generating {name}")
    psql(f"DROP TABLE IF EXISTS public.{name}", url=RS)
    psql(f"CREATE TABLE public.{name} (id bigint NOT NULL, customer_id integer, amount decimal(12,2), note varchar(64), "
         f"is_deleted boolean, updated_at timestamp NOT NULL, PRIMARY KEY (id))", url=RS)
    psql(f"INSERT INTO public.{name} SELECT g, g % 997, g * 1.25, 'note ' || g, false, now() FROM generate_series(1, {rows}) g; ANALYZE public.{name}")
    return name


def bench_redshift_snapshot(sizes, runs):
    """Redshift -> spool: keyset SELECT pages vs UNLOAD, on tables without an index on the key (as on Redshift)."""
    out = {}
    for rows in sizes:
        table = rs_snapshot_table(rows)
        out[str(rows)] = {}
        for extract in ["select", "unload"]:
            vals = []
            for r in range(runs):
                cfg = os.path.join(TMP, f"rs-snap-{extract}.yaml")
                state = rs_config(cfg, f"  - name: s\n    from: {{ table: public.{table} }}\n    to: {{ collection: s }}\n    key: [id]\n"
                                       f"    watermark: updated_at\n    extract: {extract}\n    partitions: 8\n", "bench_rs_snap", "bench-snap/")
                shutil.rmtree(state, ignore_errors=True)
                res = measure([BIN, "snapshot", "--spool-only", "--config", cfg, "--log-format", "json"], timeout=7200)
                shutil.rmtree(state, ignore_errors=True)
                if res["rc"] == 0:
                    vals.append(res)
                log(f"redshift snapshot {rows:,} rows extract={extract} run {r + 1}: {res['wall']:.1f} s, {rows / res['wall']:,.0f} rows/s, peak RSS {res['rss_mib']:.0f} MiB")
            out[str(rows)][extract] = {"seconds": median([x["wall"] for x in vals]), "rows_per_s": median([rows / x["wall"] for x in vals]),
                                       "cpu_us_per_row": median([x["cpu"] / rows * 1e6 for x in vals]), "rss_mib": median([x["rss_mib"] for x in vals])} if vals else {"failed": True}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="extract,memory,apply,latency,redshift")
    args = ap.parse_args()
    quick = args.quick
    rows = 500_000 if quick else 5_000_000
    slow_rows = 100_000 if quick else 1_000_000
    sizes = [100_000, 250_000, 500_000] if quick else [500_000, 1_000_000, 5_000_000]
    os.makedirs(OUT, exist_ok=True)
    # Committed, so `--only` reruns keep the other sections; MONGOSHIFT_BENCH_RESULTS writes elsewhere (trial runs).
    results_path = os.environ.get("MONGOSHIFT_BENCH_RESULTS", os.path.join(ROOT, "bench", "results.json"))
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    def save():
        json.dump(results, open(results_path, "w"), indent=1)

    def stamp(section, runs=None):
        results.setdefault("measured", {})[section] = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                                                      + f" ({'quick' if quick else 'full'}, {runs or args.runs} runs)")
    only = args.only.split(",")
    # The header describes the sections measured together; a run of the redshift section alone keeps it.
    if set(only) - {"redshift"}:
        results["meta"] = {"mode": "quick" if quick else "full", "runs": args.runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "cpus": os.cpu_count(), "machine": os.uname().machine}
    if set(only) - {"redshift"}:
        ensure_orders(rows)
    if "extract" in only:
        results["extract"] = bench_extract(rows, slow_rows, args.runs)
        stamp("extract")
        save()
    if "memory" in only:
        results["memory"] = bench_memory(sizes, max(1, args.runs - 1))
        stamp("memory")
        save()
    if "apply" in only:
        # Short runs against a baseline that itself varies by a quarter between runs: five of each in a full run.
        apply_runs = args.runs if quick else max(args.runs, 5)
        results["apply"] = bench_apply(20_000 if quick else 100_000, apply_runs)
        stamp("apply", apply_runs)
        save()
        # The dev Mongo server holds everything in memory: leave it small for the latency runs.
        mc = pymongo_client()
        for db in ("bench_apply", "bench_r2m", "bench"):
            mc.drop_database(db)
    if "latency" in only:
        results["latency"] = bench_latency(30 if quick else 120, 10_000)
        stamp("latency")
        save()
    if "redshift" in only and RS and S3_ENDPOINT:
        psql("CREATE SCHEMA IF NOT EXISTS bench_rs", url=RS)
        results["redshift"] = {"apply": bench_redshift_apply(20_000 if quick else 100_000, args.runs),
                               "snapshot": bench_redshift_snapshot([200_000, 1_000_000] if quick else [1_000_000, 5_000_000], max(1, args.runs - 2))}
        stamp("redshift")
        pymongo_client().drop_database("bench_rs_apply")
    save()
    shutil.rmtree(TMP, ignore_errors=True)
    log("results:", results_path)


if __name__ == "__main__":
    main()

"""One test per accept / refuse / limit rule of dev-redshift (docs/DEV-REDSHIFT.md lists them), through libpq
clients: psycopg 3 (simple and extended protocol) and psql."""
import datetime as dt
import gzip
import json
import os
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
import zstandard

from conftest import ROLE

AUTH = f"IAM_ROLE '{ROLE}'"


def refused(conn, sql, params=None):
    """Runs sql; returns the error (sqlstate, message, detail) it must fail with."""
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql, params)
    d = e.value.diag
    return d.sqlstate, d.message_primary, d.message_detail


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


def psql(url, sql):
    r = subprocess.run(["psql", url, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


# ------------------------------------------------------------------------------------------------ translated SQL
def test_getdate_is_utc_statement_start_in_whole_seconds(conn):
    conn.execute("BEGIN")
    first = one(conn, "SELECT GETDATE()")[0]
    time.sleep(1.1)
    second = one(conn, "SELECT GETDATE()")[0]
    conn.execute("COMMIT")
    assert isinstance(first, dt.datetime) and first.tzinfo is None and first.microsecond == 0
    assert second > first  # statement start, even inside a transaction block
    assert abs((dt.datetime.utcnow() - second).total_seconds()) < 5


def test_sysdate_is_transaction_start(conn):
    conn.execute("BEGIN")
    a = one(conn, "SELECT SYSDATE")[0]
    time.sleep(0.05)
    b = one(conn, "SELECT sysdate")[0]
    conn.execute("COMMIT")
    assert a == b and abs((dt.datetime.utcnow() - a).total_seconds()) < 5


def test_dateadd_takes_the_datepart_as_a_keyword(conn, url):
    now, earlier = one(conn, "SELECT GETDATE(), DATEADD(second, -5, GETDATE())")
    assert (now - earlier) == dt.timedelta(seconds=5)
    assert one(conn, "SELECT DATEADD(month, 1, '2008-04-30'::date)")[0] == dt.datetime(2008, 5, 30)
    assert one(conn, "SELECT DATEADD(d, 2, '2020-01-01 00:00:00'::timestamp)")[0] == dt.datetime(2020, 1, 3)
    rc, out, err = psql(url, "select getdate(), dateadd(second, -5, getdate())::text")  # the product's shape, simple protocol
    assert rc == 0, err
    assert len(out.split("|")) == 2


def test_datediff_counts_boundaries(conn):
    assert one(conn, "SELECT DATEDIFF(day, '2020-01-01 23:59'::timestamp, '2020-01-02 00:01'::timestamp)")[0] == 1
    assert one(conn, "SELECT DATEDIFF(year, '2019-12-31'::date, '2020-01-01'::date)")[0] == 1
    assert one(conn, "SELECT DATEDIFF(hours, '2020-01-01 10:59'::timestamp, '2020-01-01 11:00'::timestamp)")[0] == 1


def test_sum_of_integers_is_a_bigint_that_overflows(conn, table):
    # Redshift: SUM of SMALLINT, INTEGER or BIGINT returns BIGINT (PostgreSQL's sum(bigint) is a numeric).
    conn.execute(f"CREATE TABLE {table} (k bigint, i int, d decimal(38,0))")
    conn.execute(f"INSERT INTO {table} VALUES (9000000000000000000, 2000000000, 9000000000000000000), (9000000000000000000, 2000000000, 9000000000000000000)")
    assert one(conn, f"SELECT sum(i) FROM {table}")[0] == 4000000000
    assert one(conn, f"SELECT sum(d) FROM {table}")[0] == 18000000000000000000
    with pytest.raises(psycopg.Error) as e:
        one(conn, f"SELECT sum(k) FROM {table}")
    assert e.value.sqlstate == "22003"


def test_nvl_and_nvl2(conn):
    assert one(conn, "SELECT NVL(NULL, 'b'), NVL2(NULL, 1, 2)") == ("b", 2)


def test_super_via_json_parse_shown_as_redshift_shows_it(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, s SUPER)")
    conn.execute(f"INSERT INTO {table} VALUES (1, JSON_PARSE(%s))", ('{"a": [1, 2], "b": "x y"}',))
    cur = conn.execute(f"SELECT s, JSON_SERIALIZE(s) FROM {table}")
    assert cur.description[0].type_code == 4000  # Redshift's SUPER OID
    assert cur.fetchone() == ('{"a":[1,2],"b":"x y"}', '{"a":[1,2],"b":"x y"}')
    assert refused(conn, "SELECT JSON_PARSE('{not json')")[1] == "JSON parsing error"
    # CAST(varchar AS SUPER) makes a SUPER string (JSON_PARSE is what parses), as the product's type widening relies on.
    assert one(conn, "SELECT CAST('{\"a\":1}'::varchar(20) AS SUPER), CAST(5 AS SUPER)") == ('"{\\"a\\":1}"', "5")


def test_varbyte_from_hex_to_hex_shown_as_redshift_shows_it(conn, table):
    conn.execute(f"CREATE TABLE {table} (v VARBYTE(4))")
    conn.execute(f"INSERT INTO {table} VALUES (FROM_HEX(%s))", ("00ff10ab",))
    cur = conn.execute(f"SELECT v, TO_HEX(v) FROM {table}")
    assert cur.description[0].type_code == 6551  # Redshift's VARBYTE OID
    assert cur.fetchone() == ("00ff10ab", "00ff10ab")


def test_from_varbyte_formats(conn):
    # Redshift's FROM_VARBYTE page: hex, binary, utf8 (utf-8, utf_8) and base64.
    row = conn.execute("SELECT FROM_VARBYTE(FROM_HEX('6162'), 'hex'), FROM_VARBYTE(FROM_HEX('4d'), 'binary'), "
                       "FROM_VARBYTE(FROM_HEX('6162'), 'UTF8'), FROM_VARBYTE(FROM_HEX('6162'), 'base64')").fetchone()
    assert row == ("6162", "01001101", "ab", "YWI=")
    long = conn.execute("SELECT FROM_VARBYTE(FROM_HEX(REPEAT('ff', 100)), 'base64')").fetchone()[0]
    assert "\n" not in long and len(long) == 136


def test_merge_update_and_insert(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10))")
    conn.execute(f"CREATE TEMP TABLE s_{table} (id int, v varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'old'), (2, 'keep')")
    conn.execute(f"INSERT INTO s_{table} VALUES (1, 'new'), (3, 'ins')")
    conn.execute(f"MERGE INTO {table} USING s_{table} s ON {table}.id = s.id "
                 f"WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)")
    assert conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall() == [(1, "new"), (2, "keep"), (3, "ins")]


def test_merge_remove_duplicates(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10))")
    conn.execute(f"CREATE TEMP TABLE s_{table} (id int, v varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'old'), (2, 'keep')")
    conn.execute(f"INSERT INTO s_{table} VALUES (1, 'new'), (3, 'ins')")
    conn.execute(f"MERGE INTO {table} USING s_{table} ON {table}.id = s_{table}.id REMOVE DUPLICATES")
    assert conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall() == [(1, "new"), (2, "keep"), (3, "ins")]


def test_merge_refuses_what_redshift_refuses(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10))")
    conn.execute(f"CREATE TEMP TABLE s_{table} (id int, v varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    conn.execute(f"INSERT INTO s_{table} VALUES (1, 'x'), (1, 'y')")
    code, msg, _ = refused(conn, f"MERGE INTO {table} USING (SELECT * FROM s_{table}) s ON {table}.id = s.id "
                                 "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)")
    assert "MERGE source" in msg
    assert refused(conn, f"MERGE INTO {table} USING s_{table} s ON {table}.id = s.id WHEN MATCHED AND s.v = 'x' THEN DELETE "
                         "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)")[:2] == ("42601", 'syntax error at or near "AND"')
    assert refused(conn, f"MERGE INTO {table} USING s_{table} s ON {table}.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v "
                         "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)")[1] == "Found multiple matches to update the same tuple."


def test_lock_several_tables(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute(f"CREATE TABLE {table}_b (id int)")
    try:
        conn.execute("BEGIN")
        conn.execute(f"LOCK {table}, {table}_b")
        modes = {r[0] for r in conn.execute("SELECT lock_mode FROM svv_transactions WHERE pid = pg_backend_pid()").fetchall()}
        conn.execute("COMMIT")
        assert "AccessExclusiveLock" in modes
    finally:
        conn.execute(f"DROP TABLE {table}_b")


def test_temp_table_and_casts(conn):
    conn.execute("CREATE TEMP TABLE tmp_cast (a varchar(10), b int)")
    conn.execute("INSERT INTO tmp_cast VALUES ('12', 3)")
    assert one(conn, "SELECT a::int + b, b::varchar(5), '2020-01-02'::date FROM tmp_cast") == (15, "3", dt.date(2020, 1, 2))
    conn.execute("CREATE TABLE #hashtemp (a int)")  # Redshift: a name that begins with # is a temporary table
    assert one(conn, "SELECT count(*) FROM #hashtemp")[0] == 0


def test_alter_table_add_rename_and_grow_varchar(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(3))")
    conn.execute(f"ALTER TABLE {table} ADD COLUMN w varchar(2)")
    conn.execute(f"ALTER TABLE {table} RENAME COLUMN w TO w2")
    cur = conn.execute(f"ALTER TABLE {table} ALTER COLUMN v TYPE varchar(6)")
    assert cur.statusmessage == "ALTER TABLE"
    conn.execute(f"INSERT INTO {table} (id, v, w2) VALUES (1, 'éé', 'ab')")  # 4 bytes now fit
    assert one(conn, f"SELECT type FROM pg_table_def WHERE tablename = %s AND \"column\" = 'v'", (table,))[0] == "character varying(6)"
    assert refused(conn, f"INSERT INTO {table} (id, v) VALUES (2, 'éééé')")[1] == "value too long for type character varying(6)"


def test_unquoted_and_quoted_identifiers_fold_to_lower_case(conn):
    conn.execute('CREATE TEMP TABLE "MixedCase" ("ColA" int)')
    conn.execute('INSERT INTO mixedcase (cola) VALUES (1)')
    cur = conn.execute('SELECT "COLA" FROM "MIXEDCASE"')
    assert cur.description[0].name == "cola" and cur.fetchone() == (1,)


# ------------------------------------------------------------------------------------------------ system views
def test_pg_table_def_only_schemas_on_search_path(conn, table):
    schema = f"s_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        conn.execute(f"CREATE TABLE {schema}.hidden (a int)")
        conn.execute(f"CREATE TABLE {table} (id int NOT NULL, v varchar(5)) DISTKEY(id) SORTKEY(id)")
        rows = conn.execute("SELECT \"column\", type, distkey, sortkey, notnull FROM pg_table_def WHERE tablename = %s", (table,)).fetchall()
        assert rows == [("id", "integer", True, 1, True), ("v", "character varying(5)", False, 0, False)]
        assert conn.execute("SELECT count(*) FROM pg_table_def WHERE schemaname = %s", (schema,)).fetchone()[0] == 0
        conn.execute(f"SET search_path TO public, {schema}")
        assert conn.execute("SELECT count(*) FROM pg_table_def WHERE schemaname = %s", (schema,)).fetchone()[0] == 1
    finally:
        conn.execute("SET search_path TO DEFAULT")
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_svv_table_info_omits_empty_tables_and_is_for_superusers(conn, table, url):
    conn.execute(f"CREATE TABLE {table} (id int)")
    q = 'SELECT tbl_rows::bigint FROM svv_table_info WHERE "schema" = %s AND "table" = %s'  # the product's statement
    assert conn.execute(q, ("public", table)).fetchall() == []
    conn.execute(f"INSERT INTO {table} VALUES (1), (2)")
    assert conn.execute(q, ("public", table)).fetchall() == [(2,)]
    user = f"u_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE USER {user}")
    try:
        other = url.replace("postgres@", f"{user}@", 1)
        with psycopg.connect(other, autocommit=True) as c2:
            assert refused(c2, "SELECT * FROM svv_table_info")[1] == "permission denied for relation svv_table_info"
        conn.execute(f"GRANT SELECT ON svv_table_info TO {user}")
        with psycopg.connect(other, autocommit=True) as c2:
            assert c2.execute(q, ("public", table)).fetchall() == [(2,)]
    finally:
        conn.execute(f"REVOKE ALL ON svv_table_info FROM {user}")
        conn.execute(f"DROP USER {user}")


def test_svv_columns_shows_redshift_types(conn, table):
    conn.execute(f"CREATE TABLE {table} (a super, b varbyte(8), c varchar(7))")
    rows = conn.execute("SELECT column_name, data_type, character_maximum_length FROM svv_columns WHERE table_name = %s ORDER BY ordinal_position",
                        (table,)).fetchall()
    assert rows == [("a", "super", None), ("b", "binary varying", None), ("c", "character varying", 7)]


def test_stv_slices_has_the_configured_slice_count(conn):
    n = int(os.environ.get("DEV_REDSHIFT_SLICES", "2"))
    assert conn.execute("SELECT count(*) FROM stv_slices").fetchone()[0] == n


def test_svv_user_info_shows_superuser_and_syslog_access(conn):
    row = conn.execute("SELECT superuser, syslog_access FROM svv_user_info WHERE user_name = current_user").fetchone()
    assert row == (True, "UNRESTRICTED")


def test_open_transactions_in_svv_transactions_and_stv_inflight(conn, url, table):
    conn.execute(f"CREATE TABLE {table} (id int)")
    with psycopg.connect(url) as other:  # not autocommit: an open transaction
        other.execute(f"SELECT * FROM {table}")
        pid = other.info.backend_pid
        rows = conn.execute("SELECT xid, pid, txn_start, lock_mode, relation FROM svv_transactions WHERE pid = %s", (pid,)).fetchall()
        assert rows and all(r[2] is not None for r in rows)
        assert any(r[3] == "AccessShareLock" for r in rows)
        done = threading.Event()

        def sleeper():
            with psycopg.connect(url, autocommit=True) as c3:
                c3.execute("SELECT pg_sleep(1.5)")
            done.set()
        threading.Thread(target=sleeper).start()
        time.sleep(0.5)
        inflight = conn.execute("SELECT text FROM stv_inflight").fetchall()
        assert any("pg_sleep" in r[0] for r in inflight)
        done.wait(5)
        other.rollback()


def test_information_schema_hides_the_stand_in_schema(conn):
    assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = '_dev_redshift'").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("sql,expected", [
    ("INSERT INTO {t} VALUES (1) ON CONFLICT DO NOTHING", ("42601", 'syntax error at or near "ON"')),
    ("INSERT INTO {t} VALUES (1) RETURNING id", ("42601", 'syntax error at or near "RETURNING"')),
    ("UPDATE {t} SET id = 2 RETURNING id", ("42601", 'syntax error at or near "RETURNING"')),
    ("SELECT * FROM {t} FOR UPDATE", ("42601", 'syntax error at or near "FOR"')),
    ("SELECT * FROM {t} FOR UPDATE SKIP LOCKED", ("42601", 'syntax error at or near "FOR"')),
    ("COPY {t} FROM STDIN", ("42601", 'syntax error at or near "STDIN"')),
    ("COPY {t} TO STDOUT", ("42601", 'syntax error at or near "TO"')),
    ("CREATE TABLE {t}_j (a jsonb)", ("42704", 'type "jsonb" does not exist')),
    ("CREATE TABLE {t}_j (a json)", ("42704", 'type "json" does not exist')),
    ("SELECT '{{}}'::jsonb", ("42704", 'type "jsonb" does not exist')),
    ("CREATE TABLE {t}_a (a int[])", ("42601", 'syntax error at or near "["')),
    ("SELECT ARRAY[1, 2]", ("42601", 'syntax error at or near "["')),
    ("SELECT pg_advisory_lock(42)", ("42883", "function pg_advisory_lock does not exist")),
    ("SELECT pg_try_advisory_xact_lock(42)", ("42883", "function pg_try_advisory_xact_lock does not exist")),
    ("CREATE INDEX i_{t} ON {t} (id)", ("0A000", "CREATE INDEX is not supported")),
    ("CREATE SEQUENCE s_{t}", ("0A000", "CREATE SEQUENCE is not supported")),
    ("SELECT * FROM (VALUES (1), (2)) v(x)", ("0A000", "VALUES list used as a constant table is not supported")),
    ("CREATE TABLE {t}_c (a int CHECK (a > 0))", ("0A000", "CHECK constraints are not supported")),
    ("CREATE TABLE {t}_s (a serial)", ("42704", 'type "serial" does not exist')),
    ("CREATE TABLE {t}_o (oid int)", ("42701", 'column name "oid" conflicts with a system column name')),
    ("PREPARE TRANSACTION 'g_{t}'", ("42601", 'syntax error at or near "TRANSACTION"')),
    ("COMMIT PREPARED 'g_{t}'", ("42601", 'syntax error at or near "PREPARED"')),
])
def test_postgresql_only_sql_is_refused_with_redshifts_error(conn, table, sql, expected):
    conn.execute(f"CREATE TABLE {table} (id int)")
    assert refused(conn, sql.format(t=table))[:2] == expected


def test_refusals_through_psql_simple_protocol(url):
    rc, _, err = psql(url, "create temp table x (a int); insert into x values (1) on conflict do nothing")
    assert rc != 0 and 'syntax error at or near "on"' in err


def test_binary_result_format_is_refused(conn):
    with pytest.raises(psycopg.Error) as e:
        conn.cursor(binary=True).execute("SELECT 1")
    assert e.value.diag.message_primary == "binary format for result columns is not supported"
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on


def test_a_refused_statement_aborts_the_open_transaction(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute("BEGIN")
    refused(conn, f"INSERT INTO {table} VALUES (1) RETURNING id")
    assert refused(conn, "SELECT 1")[0] == "25P02"
    conn.execute("ROLLBACK")


# ------------------------------------------------------------------------------------------------ limits
def test_statement_text_is_at_most_16_mb(conn):
    big = "SELECT 1 /*" + "x" * (16 * 1024 * 1024) + "*/"
    code, msg, _ = refused(conn, big)
    assert msg.startswith("Statement is too large. Statement Size: ") and msg.endswith("Maximum Allowed: 16777216 bytes")
    assert one(conn, "SELECT 1 /*" + "x" * (15 * 1024 * 1024) + "*/")[0] == 1


def test_at_most_32767_bind_parameters(conn):
    ok = "SELECT 1 WHERE 32767 IN (" + ", ".join("%s::int" for _ in range(32767)) + ")"
    assert one(conn, ok, list(range(1, 32768)))[0] == 1
    too_many = "SELECT 1 WHERE 1 IN (" + ", ".join("%s::int" for _ in range(32768)) + ")"
    assert refused(conn, too_many, [1] * 32768)[1] == "too many parameters: 32768 (the limit is 32767)"


def test_varchar_length_counts_bytes(conn, table):
    conn.execute(f"CREATE TABLE {table} (v varchar(4), c char(2))")
    conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", ("éé",))  # 2 characters, 4 bytes
    assert refused(conn, f"INSERT INTO {table} (v) VALUES (%s)", ("ééé",))[:2] == ("22001", "value too long for type character varying(4)")
    assert refused(conn, f"INSERT INTO {table} (c) VALUES ('é€')")[1] == "value too long for type character varying(2)"
    assert refused(conn, f"UPDATE {table} SET v = 'abcde'")[1] == "value too long for type character varying(4)"


def test_varchar_at_most_65535_and_bare_varchar_is_256(conn, table):
    assert refused(conn, f"CREATE TABLE {table}_x (v varchar(65536))")[1] == "length for type varchar cannot exceed 65535"
    conn.execute(f"CREATE TABLE {table} (v varchar(max), w varchar, x text)")
    rows = conn.execute("SELECT \"column\", type FROM pg_table_def WHERE tablename = %s", (table,)).fetchall()
    assert rows == [("v", "character varying(65535)"), ("w", "character varying(256)"), ("x", "character varying(256)")]


def test_decimal_precision_at_most_38(conn, table):
    assert refused(conn, f"CREATE TABLE {table}_x (d decimal(39, 2))")[1] == "NUMERIC precision 39 must be between 1 and 38"
    conn.execute(f"CREATE TABLE {table} (d decimal(38, 2), e decimal)")
    rows = conn.execute("SELECT type FROM pg_table_def WHERE tablename = %s", (table,)).fetchall()
    assert rows == [("numeric(38,2)",), ("numeric(18,0)",)]


def test_varbyte_default_64000_and_max_1024000(conn, table):
    conn.execute(f"CREATE TABLE {table} (v varbyte)")
    conn.execute(f"INSERT INTO {table} VALUES (FROM_HEX(%s))", ("ab" * 64000,))
    assert refused(conn, f"INSERT INTO {table} VALUES (FROM_HEX(%s))", ("ab" * 64001,))[1] == "value too long for type varbyte(64000)"
    assert refused(conn, f"CREATE TABLE {table}_x (v varbyte(1024001))")[1] == "length for type varbyte cannot exceed 1024000"


def test_cast_to_sized_varbyte_in_a_table_rewrite(conn, table):
    conn.execute(f"CREATE TABLE {table} (v varbyte(4))")
    conn.execute(f"INSERT INTO {table} VALUES (FROM_HEX('abcd'))")
    conn.execute(f"CREATE TABLE {table}_w (v varbyte(70000))")
    conn.execute(f"INSERT INTO {table}_w SELECT CAST(v AS VARBYTE(70000)) FROM {table}")
    assert one(conn, f"SELECT TO_HEX(v) FROM {table}_w")[0] == "abcd"
    conn.execute(f"DROP TABLE {table}_w")


def test_super_string_at_most_65535_bytes(conn, table):
    conn.execute(f"CREATE TABLE {table} (s super)")
    conn.execute(f"INSERT INTO {table} VALUES (JSON_PARSE(%s))", (json.dumps({"a": "x" * 65535}),))
    code, msg, _ = refused(conn, f"INSERT INTO {table} VALUES (JSON_PARSE(%s))", (json.dumps({"a": "x" * 65536}),))
    assert msg == "Value of SUPER type exceeds the maximum string length 65535"


def test_key_constraints_are_informational(conn, table, backend_url):
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, u varchar(5) UNIQUE, r int REFERENCES other_table(id))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 99), (1, 'a', 98)")  # duplicates and a dangling reference: accepted
    assert one(conn, f"SELECT count(*) FROM {table}")[0] == 2
    rows = conn.execute(  # the product's statement (SourceTable.declaredPrimaryKey)
        """SELECT kcu.column_name FROM information_schema.table_constraints tc
           JOIN information_schema.key_column_usage kcu
             ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema AND kcu.table_name = tc.table_name
           WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = $1 AND tc.table_name = $2
           ORDER BY kcu.ordinal_position""".replace("$1", "%s").replace("$2", "%s"), ("public", table)).fetchall()
    assert rows == [("id",)]
    kinds = {r[0] for r in conn.execute("SELECT constraint_type FROM information_schema.table_constraints WHERE table_name = %s", (table,))}
    assert kinds == {"PRIMARY KEY", "UNIQUE", "FOREIGN KEY"}
    with psycopg.connect(backend_url) as direct:  # no index on the backend
        assert direct.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (table,)).fetchone()[0] == 0


def test_drop_column_used_by_a_key_is_refused(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v int, PRIMARY KEY (id))")
    assert refused(conn, f"ALTER TABLE {table} DROP COLUMN id")[:2] == ("2BP01", f"cannot drop table {table} column id because other objects depend on it")
    conn.execute(f"ALTER TABLE {table} DROP COLUMN v")
    assert [r[0] for r in conn.execute("SELECT \"column\" FROM pg_table_def WHERE tablename = %s", (table,))] == ["id"]


def test_alter_column_type_refused_in_a_transaction_block_and_on_keys(conn, table):
    conn.execute(f"CREATE TABLE {table} (id varchar(5) PRIMARY KEY, v varchar(5), n int)")
    conn.execute("BEGIN")
    assert refused(conn, f"ALTER TABLE {table} ALTER COLUMN v TYPE varchar(10)")[:2] == \
        ("25001", "ALTER TABLE ALTER COLUMN cannot run inside a transaction block")
    conn.execute("ROLLBACK")
    assert "key column" in refused(conn, f"ALTER TABLE {table} ALTER COLUMN id TYPE varchar(10)")[1]
    assert refused(conn, f"ALTER TABLE {table} ALTER COLUMN n TYPE bigint")[0] == "0A000"
    conn.execute(f"INSERT INTO {table} (id, v) VALUES ('a', 'abcd')")
    assert "target column size 2" in refused(conn, f"ALTER TABLE {table} ALTER COLUMN v TYPE varchar(2)")[1]
    conn.execute(f"ALTER TABLE {table} ALTER COLUMN v TYPE varchar(10)")


def test_serializable_conflict_is_redshift_error_1023(url, table, conn):
    conn.execute(f"CREATE TABLE {table} (id int, n int)")
    conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
    a, b = psycopg.connect(url), psycopg.connect(url)
    try:
        a.execute(f"SELECT sum(n) FROM {table}")
        b.execute(f"SELECT sum(n) FROM {table}")
        a.execute(f"INSERT INTO {table} VALUES (2, 1)")
        b.execute(f"INSERT INTO {table} VALUES (3, 1)")
        a.commit()
        with pytest.raises(psycopg.Error) as e:
            b.commit()
        d = e.value.diag
        assert (d.sqlstate, d.message_primary) == ("XX000", "1023")
        assert d.message_detail.startswith("Serializable isolation violation on table")
    finally:
        a.close()
        b.close()


def test_concurrent_create_table_with_keys_does_not_conflict(url, table, conn):
    # Redshift's catalogs are not locked in a transaction (DDL is visible on commit): two sessions creating
    # different tables with informational keys at the same time both commit. The stand-in's own bookkeeping
    # of those keys must not turn into a serialization failure.
    a, b = psycopg.connect(url), psycopg.connect(url)
    try:
        a.execute(f"CREATE TABLE {table}_a (id int NOT NULL, v int, PRIMARY KEY (id)) DISTSTYLE KEY DISTKEY (id)")
        b.execute(f"CREATE TABLE {table}_b (id int NOT NULL, v int, PRIMARY KEY (id)) DISTSTYLE KEY DISTKEY (id)")
        a.commit()
        b.commit()
        a.execute(f"DROP TABLE {table}_a")
        b.execute(f"DROP TABLE {table}_b")
        a.commit()
        b.commit()
    finally:
        a.close()
        b.close()


def test_lock_first_serialises_writers_without_1023(url, table, conn):
    conn.execute(f"CREATE TABLE {table} (id int, n int)")
    conn.execute(f"INSERT INTO {table} VALUES (1, 0)")
    a, b = psycopg.connect(url), psycopg.connect(url)
    errors = []
    try:
        a.execute(f"LOCK {table}")
        a.execute(f"SELECT sum(n) FROM {table}")

        def second():
            try:
                b.execute(f"LOCK {table}")  # waits for a
                b.execute(f"SELECT sum(n) FROM {table}")
                b.execute(f"INSERT INTO {table} VALUES (3, 1)")
                b.commit()
            except Exception as e:
                errors.append(e)
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        a.execute(f"INSERT INTO {table} VALUES (2, 1)")
        a.commit()
        t.join(10)
        assert errors == []
        assert one(conn, f"SELECT count(*) FROM {table}")[0] == 3
    finally:
        a.close()
        b.close()


def test_truncate_commits_the_current_transaction(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute(f"CREATE TABLE {table}_b (id int)")
    try:
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {table}_b VALUES (1)")
        conn.execute(f"TRUNCATE {table}")
        conn.execute("ROLLBACK")  # too late: TRUNCATE committed the insert
        assert one(conn, f"SELECT count(*) FROM {table}_b")[0] == 1
    finally:
        conn.execute(f"DROP TABLE {table}_b")


# ------------------------------------------------------------------------------------------------ protocol
def test_extended_protocol_with_parameters_and_prepared_statements(conn, table):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(20), ts timestamp)")
    for i in range(8):  # psycopg prepares a statement it runs more than 5 times
        conn.execute(f"INSERT INTO {table} VALUES (%s, %s, DATEADD(day, %s, '2020-01-01'::timestamp))", (i, f"v{i}", i))
    rows = conn.execute(f"SELECT id, v, ts FROM {table} WHERE id >= %s ORDER BY id LIMIT %s", (5, 2)).fetchall()
    assert rows == [(5, "v5", dt.datetime(2020, 1, 6)), (6, "v6", dt.datetime(2020, 1, 7))]


def test_single_row_fetch_of_a_large_result(conn):
    n = 0
    total = 0
    with conn.cursor() as cur:
        for row in cur.stream("SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g"):  # libpq single-row mode
            n += 1
            total += row[0]
    assert n == 200000 and total == 200000 * 200001 // 2


def test_password_auth_scram_end_to_end_and_no_password_in_log(conn, url):
    user, password = f"pw_{uuid.uuid4().hex[:8]}", "s3cret-" + uuid.uuid4().hex[:8]
    conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mongoshift_pw') THEN CREATE ROLE mongoshift_pw; END IF; END $$")
    conn.execute(f"CREATE USER {user} PASSWORD '{password}' IN ROLE mongoshift_pw")
    try:
        base = url.replace("postgres@", f"{user}:{password}@", 1)
        with psycopg.connect(base) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == user
        with pytest.raises(psycopg.OperationalError) as e:
            psycopg.connect(url.replace("postgres@", f"{user}:wrong@", 1))
        assert "password authentication failed" in str(e.value)
        with open(os.environ["MONGOSHIFT_TEST_REDSHIFT_LOG"], encoding="utf-8") as f:
            log = f.read()
        assert password not in log.replace(f"PASSWORD '{password}'", "")
    finally:
        conn.execute(f"DROP USER {user}")


def test_every_statement_is_logged_once(conn, table):
    marker = uuid.uuid4().hex
    conn.execute(f"SELECT '{marker}' AS a; SELECT 2")
    for _ in range(3):
        conn.execute(f"SELECT %s::text, '{marker}-p'", ("x",))
    with pytest.raises(psycopg.Error):
        conn.execute(f"SELECT '{marker}-e' FROM no_such_table_{marker}")
    with open(os.environ["MONGOSHIFT_TEST_REDSHIFT_LOG"], encoding="utf-8") as f:
        records = [json.loads(line) for line in f if marker in line]
    assert [r["sql"] for r in records][:1] == [f"SELECT '{marker}' AS a"]
    assert sum(1 for r in records if r["sql"].endswith(f"'{marker}-p'")) >= 3
    bad = [r for r in records if f"{marker}-e" in r["sql"]]
    assert len(bad) == 1 and bad[0]["ok"] is False and "does not exist" in bad[0]["error"]
    assert all(set(r) == {"time", "session", "application", "sql", "ok", "error"} for r in records)


# ------------------------------------------------------------------------------------------------ COPY
def test_copy_csv_gzip_from_a_prefix(conn, table, s3, bucket, prefix):
    s3.put_object(Bucket=bucket, Key=prefix + "a.csv.gz", Body=gzip.compress(b"id,v,ts\n1,hello,2020-01-01 10:00:00\n2,\"a,b\",2020-01-02T03:04:05Z\n"))
    s3.put_object(Bucket=bucket, Key=prefix + "b.csv.gz", Body=gzip.compress(b"id,v,ts\n3,,2020-01-03\n"))
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10), ts timestamp)")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    cur = conn.execute(f"COPY {table} FROM 's3://{bucket}/{prefix}' {AUTH} FORMAT AS CSV GZIP IGNOREHEADER 1 "
                       "TIMEFORMAT 'auto' DATEFORMAT 'auto' EMPTYASNULL REGION 'us-east-1' COMPUPDATE OFF STATUPDATE OFF")
    assert cur.statusmessage == "COPY"
    assert f"Load into table '{table}' completed, 3 record(s) loaded successfully." in notices
    assert conn.execute(f"SELECT id, v, ts FROM {table} ORDER BY id").fetchall() == [
        (1, "hello", dt.datetime(2020, 1, 1, 10)), (2, "a,b", dt.datetime(2020, 1, 2, 3, 4, 5)), (3, None, dt.datetime(2020, 1, 3))]


def test_copy_json_auto_zstd_with_manifest_into_a_temp_table_in_the_same_transaction(conn, s3, bucket, prefix):
    body = b'{"id": 1, "Name": "a", "doc": {"k": [1, 2]}}\n{"id": 2, "Name": null}\n'
    s3.put_object(Bucket=bucket, Key=prefix + "p0.json.zst", Body=zstandard.ZstdCompressor().compress(body))
    s3.put_object(Bucket=bucket, Key=prefix + "manifest", Body=json.dumps(
        {"entries": [{"url": f"s3://{bucket}/{prefix}p0.json.zst", "mandatory": True},
                     {"url": f"s3://{bucket}/{prefix}gone.json.zst", "mandatory": False}]}).encode())
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE stage_json (id int, name varchar(5), doc super)")
    conn.execute(f"COPY stage_json FROM 's3://{bucket}/{prefix}manifest' {AUTH} FORMAT JSON 'auto ignorecase' ZSTD MANIFEST")
    rows = conn.execute("SELECT id, name, doc FROM stage_json ORDER BY id").fetchall()
    conn.execute("COMMIT")
    assert rows == [(1, "a", '{"k":[1,2]}'), (2, None, None)]


def test_copy_json_cannot_load_a_varbyte_column(conn, table, s3, bucket, prefix):
    s3.put_object(Bucket=bucket, Key=prefix + "b.json", Body=b'{"id": 1, "b": "6162"}\n')
    conn.execute(f"CREATE TABLE {table} (id int, b varbyte(8))")
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"COPY {table} FROM 's3://{bucket}/{prefix}b.json' {AUTH} FORMAT JSON 'auto'")
    assert "VARBYTE" in str(e.value)


def test_copy_json_with_a_jsonpaths_file_and_access_keys(conn, table, s3, bucket, prefix):
    s3.put_object(Bucket=bucket, Key=prefix + "d.json", Body=b'{"a": {"b": 5}, "c": ["x", "y"]}')
    s3.put_object(Bucket=bucket, Key=prefix + "paths.json", Body=b'{"jsonpaths": ["$.a.b", "$[\'c\'][1]"]}')
    conn.execute(f"CREATE TABLE {table} (n int, s varchar(3))")
    conn.execute(f"COPY {table} FROM 's3://{bucket}/{prefix}d.json' ACCESS_KEY_ID '{os.environ['AWS_ACCESS_KEY_ID']}' "
                 f"SECRET_ACCESS_KEY '{os.environ['AWS_SECRET_ACCESS_KEY']}' JSON 's3://{bucket}/{prefix}paths.json'")
    assert conn.execute(f"SELECT n, s FROM {table}").fetchall() == [(5, "y")]


def test_copy_malformed_line_goes_to_stl_load_errors_and_fails_the_load(conn, table, s3, bucket, prefix):
    s3.put_object(Bucket=bucket, Key=prefix + "bad.txt", Body="1|ok\nx2|bad\n3|ééé\n".encode())
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(4))")
    code, msg, _ = refused(conn, f"COPY {table} FROM 's3://{bucket}/{prefix}bad.txt' {AUTH} DELIMITER '|' MAXERROR 1")
    assert (code, msg) == ("XX000", f"Load into table '{table}' failed.  Check 'stl_load_errors' system table for details.")
    assert one(conn, f"SELECT count(*) FROM {table}")[0] == 0
    rows = conn.execute("SELECT trim(filename), line_number, trim(colname), err_code, trim(err_reason), trim(raw_field_value) "
                        "FROM stl_load_errors WHERE trim(filename) = %s ORDER BY line_number", (f"s3://{bucket}/{prefix}bad.txt",)).fetchall()
    assert rows == [(f"s3://{bucket}/{prefix}bad.txt", 2, "id", 1207, "Invalid digit, Value 'x', Pos 0, Type: Integer", "x2"),
                    (f"s3://{bucket}/{prefix}bad.txt", 3, "v", 1204, "String length exceeds DDL length", "ééé")]
    detail = conn.execute("SELECT line_number, trim(column_name), error_code FROM sys_load_error_detail WHERE trim(file_name) = %s "
                          "ORDER BY line_number", (f"s3://{bucket}/{prefix}bad.txt",)).fetchall()
    assert detail == [(2, "id", 1207), (3, "v", 1204)]


def test_copy_maxerror_loads_the_good_rows(conn, table, s3, bucket, prefix):
    s3.put_object(Bucket=bucket, Key=prefix + "m.csv", Body=b"1,a\nx,b\n3,c\n")
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(4))")
    conn.execute(f"COPY {table} FROM 's3://{bucket}/{prefix}' {AUTH} CSV MAXERROR 5")
    assert [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")] == [1, 3]


@pytest.mark.parametrize("case", ["prefix", "manifest", "mandatory", "bad_manifest", "no_auth", "bad_credentials"])
def test_copy_errors_have_redshifts_texts(conn, table, s3, bucket, prefix, case):
    conn.execute(f"CREATE TABLE {table} (id int)")
    src, opts, expected = f"s3://{bucket}/{prefix}none", AUTH, None
    if case == "prefix":
        expected = f"The specified S3 prefix '{prefix}none' does not exist"
    elif case == "manifest":
        opts += " MANIFEST"
        expected = "Problem reading manifest file - S3ServiceException:The specified key does not exist."
    elif case == "mandatory":
        s3.put_object(Bucket=bucket, Key=prefix + "man", Body=json.dumps({"entries": [{"url": f"s3://{bucket}/{prefix}x", "mandatory": True}]}).encode())
        src, opts, expected = f"s3://{bucket}/{prefix}man", AUTH + " MANIFEST", "is mandatory"
    elif case == "bad_manifest":
        s3.put_object(Bucket=bucket, Key=prefix + "man", Body=b"{not json")
        src, opts, expected = f"s3://{bucket}/{prefix}man", AUTH + " MANIFEST", "Manifest file is not in correct json format"
    elif case == "no_auth":
        opts, expected = "CSV", "needs authorization"
    elif case == "bad_credentials":
        opts, expected = "CREDENTIALS 'aws_access_key_id=abc'", "Invalid credentials. Must be of the format: credentials"
    code, msg, _ = refused(conn, f"COPY {table} FROM '{src}' {opts}")
    assert code == "XX000" and expected in msg


# ------------------------------------------------------------------------------------------------ UNLOAD
def _get(s3, url):
    bucket, key = url[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_unload_parallel_zstd_manifest_verbose_and_read_back(conn, table, s3, bucket, prefix):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10), s super)")
    conn.execute(f"INSERT INTO {table} SELECT g, 'v,' || g, JSON_PARSE('{{\"a\": 1}}') FROM generate_series(1, 10) g")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    cur = conn.execute(f"UNLOAD ('SELECT id, v, s FROM {table} WHERE v <> ''x'' ORDER BY id') TO 's3://{bucket}/{prefix}out_' {AUTH} "
                       "FORMAT CSV HEADER ZSTD PARALLEL ON MAXFILESIZE 5 MB MANIFEST VERBOSE")
    assert cur.statusmessage == "UNLOAD" and "UNLOAD completed, 10 record(s) unloaded successfully." in notices
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"])
    slices = int(os.environ.get("DEV_REDSHIFT_SLICES", "2"))
    assert keys == sorted([f"{prefix}out_{i:04d}_part_00.zst" for i in range(slices)] + [f"{prefix}out_manifest"])
    manifest = json.loads(_get(s3, f"s3://{bucket}/{prefix}out_manifest"))
    rows = []
    for e in manifest["entries"]:
        data = zstandard.ZstdDecompressor().stream_reader(_get(s3, e["url"])).read()
        raw = _get(s3, e["url"])
        assert e["meta"]["content_length"] == len(raw)
        lines = data.decode().splitlines()
        assert lines[0] == "id,v,s" and e["meta"]["record_count"] == len(lines)
        rows += lines[1:]
    assert sorted(rows, key=lambda r: int(r.split(",")[0])) == [f'{i},"v,{i}","{{""a"":1}}"' for i in range(1, 11)]
    assert manifest["meta"]["record_count"] == 10 + slices
    assert [e["name"] for e in manifest["schema"]["elements"]] == ["id", "v", "s"]


def test_unload_parallel_off_gzip_pipe_and_null(conn, table, s3, bucket, prefix):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, NULL)")
    conn.execute(f"UNLOAD ('SELECT * FROM {table} ORDER BY id') TO 's3://{bucket}/{prefix}p_' {AUTH} GZIP PARALLEL OFF NULL AS 'NULL'")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert keys == [f"{prefix}p_000.gz"]
    assert gzip.decompress(_get(s3, f"s3://{bucket}/{keys[0]}")) == b"1|a\n2|NULL\n"


def test_unload_json_manifest_is_copyable(conn, table, s3, bucket, prefix):
    conn.execute(f"CREATE TABLE {table} (id int, v varchar(10))")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    conn.execute(f"UNLOAD ('SELECT * FROM {table}') TO 's3://{bucket}/{prefix}j_' {AUTH} FORMAT JSON MANIFEST")
    manifest = json.loads(_get(s3, f"s3://{bucket}/{prefix}j_manifest"))
    assert all("content_length" in e["meta"] for e in manifest["entries"])
    conn.execute(f"CREATE TABLE {table}_copy (id int, v varchar(10))")
    try:
        conn.execute(f"COPY {table}_copy FROM 's3://{bucket}/{prefix}j_manifest' {AUTH} JSON 'auto' MANIFEST")
        assert conn.execute(f"SELECT * FROM {table}_copy ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
    finally:
        conn.execute(f"DROP TABLE {table}_copy")


def test_unload_refuses_to_overwrite_without_allowoverwrite(conn, table, s3, bucket, prefix):
    conn.execute(f"CREATE TABLE {table} (id int)")
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    sql = f"UNLOAD ('SELECT * FROM {table}') TO 's3://{bucket}/{prefix}o_' {AUTH}"
    conn.execute(sql)
    assert refused(conn, sql)[1].startswith("Specified unload destination on S3 is not empty.")
    conn.execute(sql + " ALLOWOVERWRITE")
    assert refused(conn, f"UNLOAD ('SELECT * FROM {table} LIMIT 1') TO 's3://{bucket}/{prefix}l_' {AUTH}")[0] == "0A000"

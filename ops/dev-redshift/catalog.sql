-- dev-redshift: the objects behind the emulated Redshift functions, system views and informational key
-- constraints. Installed by server.py (as the backend superuser) into each database a client connects to.
-- Idempotent: every statement can run again. Everything lives in schema _dev_redshift, which the proxy hides.
-- :slices is replaced by the configured slice count before this runs.

CREATE SCHEMA IF NOT EXISTS _dev_redshift;
GRANT USAGE ON SCHEMA _dev_redshift TO PUBLIC;

-- Informational PRIMARY KEY / UNIQUE / FOREIGN KEY constraints: recorded, never enforced, no index.
CREATE TABLE IF NOT EXISTS _dev_redshift.key_constraints (
  relid oid NOT NULL, conname name NOT NULL, contype "char" NOT NULL, conkey int2[] NOT NULL,
  ref_table text, ref_columns text[]);
-- Redshift table attributes PostgreSQL has no place for (DISTSTYLE, DISTKEY, SORTKEY, column ENCODE).
-- Looked up by relid through the index (on_drop): a relation-wide read would make two sessions' DDL on different
-- tables a serialization conflict, which Redshift's catalogs never are.
CREATE INDEX IF NOT EXISTS key_constraints_relid ON _dev_redshift.key_constraints (relid);
CREATE TABLE IF NOT EXISTS _dev_redshift.table_attrs (
  relid oid PRIMARY KEY, diststyle text, distkey text, sortkey text[], sortstyle text, encodings jsonb);
CREATE TABLE IF NOT EXISTS _dev_redshift.load_errors (
  userid int, slice int, tbl oid, starttime timestamp, session int, query bigint, filename text,
  line_number bigint, colname text, type text, col_length text, position int, raw_line text,
  raw_field_value text, err_code int, err_reason text, xid bigint, dbname text);
CREATE TABLE IF NOT EXISTS _dev_redshift.settings (name text PRIMARY KEY, value text);
INSERT INTO _dev_redshift.settings VALUES ('slices', ':slices')
  ON CONFLICT (name) DO UPDATE SET value = excluded.value;
GRANT SELECT ON _dev_redshift.key_constraints, _dev_redshift.table_attrs, _dev_redshift.settings TO PUBLIC;

-- ---------------------------------------------------------------- functions
-- GETDATE(): statement start, UTC (sessions run with TimeZone=UTC), whole seconds.
CREATE OR REPLACE FUNCTION _dev_redshift.getdate() RETURNS timestamp LANGUAGE sql STABLE
  AS $$ SELECT date_trunc('second', statement_timestamp() AT TIME ZONE 'UTC') $$;
-- SYSDATE: transaction start, UTC, microseconds.
CREATE OR REPLACE FUNCTION _dev_redshift.sysdate() RETURNS timestamp LANGUAGE sql STABLE
  AS $$ SELECT transaction_timestamp() AT TIME ZONE 'UTC' $$;

-- Date parts as Redshift names them (full names and abbreviations), to PostgreSQL's field names.
CREATE OR REPLACE FUNCTION _dev_redshift.datepart(p text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE lower(trim(p))
    WHEN 'millennium' THEN 'millennium' WHEN 'millennia' THEN 'millennium' WHEN 'mil' THEN 'millennium' WHEN 'mils' THEN 'millennium'
    WHEN 'century' THEN 'century' WHEN 'centuries' THEN 'century' WHEN 'c' THEN 'century' WHEN 'cent' THEN 'century' WHEN 'cents' THEN 'century'
    WHEN 'decade' THEN 'decade' WHEN 'decades' THEN 'decade' WHEN 'dec' THEN 'decade' WHEN 'decs' THEN 'decade'
    WHEN 'year' THEN 'year' WHEN 'years' THEN 'year' WHEN 'y' THEN 'year' WHEN 'yr' THEN 'year' WHEN 'yrs' THEN 'year' WHEN 'yy' THEN 'year' WHEN 'yyyy' THEN 'year'
    WHEN 'quarter' THEN 'quarter' WHEN 'quarters' THEN 'quarter' WHEN 'qtr' THEN 'quarter' WHEN 'qtrs' THEN 'quarter' WHEN 'q' THEN 'quarter'
    WHEN 'month' THEN 'month' WHEN 'months' THEN 'month' WHEN 'mon' THEN 'month' WHEN 'mons' THEN 'month'
    WHEN 'week' THEN 'week' WHEN 'weeks' THEN 'week' WHEN 'w' THEN 'week'
    WHEN 'day' THEN 'day' WHEN 'days' THEN 'day' WHEN 'd' THEN 'day'
    WHEN 'hour' THEN 'hour' WHEN 'hours' THEN 'hour' WHEN 'h' THEN 'hour' WHEN 'hr' THEN 'hour' WHEN 'hrs' THEN 'hour'
    WHEN 'minute' THEN 'minute' WHEN 'minutes' THEN 'minute' WHEN 'm' THEN 'minute' WHEN 'min' THEN 'minute' WHEN 'mins' THEN 'minute'
    WHEN 'second' THEN 'second' WHEN 'seconds' THEN 'second' WHEN 's' THEN 'second' WHEN 'sec' THEN 'second' WHEN 'secs' THEN 'second'
    WHEN 'millisecond' THEN 'millisecond' WHEN 'milliseconds' THEN 'millisecond' WHEN 'ms' THEN 'millisecond' WHEN 'msec' THEN 'millisecond'
      WHEN 'msecs' THEN 'millisecond' WHEN 'msecond' THEN 'millisecond' WHEN 'mseconds' THEN 'millisecond' WHEN 'millisec' THEN 'millisecond'
      WHEN 'millisecs' THEN 'millisecond' WHEN 'millisecon' THEN 'millisecond'
    WHEN 'microsecond' THEN 'microsecond' WHEN 'microseconds' THEN 'microsecond' WHEN 'microsec' THEN 'microsecond' WHEN 'microsecs' THEN 'microsecond'
      WHEN 'microsecond' THEN 'microsecond' WHEN 'usecond' THEN 'microsecond' WHEN 'useconds' THEN 'microsecond' WHEN 'us' THEN 'microsecond'
      WHEN 'usec' THEN 'microsecond' WHEN 'usecs' THEN 'microsecond'
    WHEN 'epoch' THEN 'epoch' WHEN 'dow' THEN 'dow' WHEN 'dayofweek' THEN 'dow' WHEN 'dw' THEN 'dow' WHEN 'weekday' THEN 'dow'
    WHEN 'doy' THEN 'doy' WHEN 'dayofyear' THEN 'doy' WHEN 'dy' THEN 'doy' WHEN 'yd' THEN 'doy'
    ELSE NULL END $$;

CREATE OR REPLACE FUNCTION _dev_redshift.dateadd(p text, n bigint, t timestamp) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE f text := _dev_redshift.datepart(p);
BEGIN
  IF f IS NULL OR f IN ('epoch', 'dow', 'doy') THEN
    RAISE EXCEPTION 'dateadd function does not support "%" date part', p USING ERRCODE = '0A000';
  END IF;
  RETURN CASE f
    WHEN 'millennium' THEN t + make_interval(years => (n * 1000)::int)
    WHEN 'century' THEN t + make_interval(years => (n * 100)::int)
    WHEN 'decade' THEN t + make_interval(years => (n * 10)::int)
    WHEN 'year' THEN t + make_interval(years => n::int)
    WHEN 'quarter' THEN t + make_interval(months => (n * 3)::int)
    WHEN 'month' THEN t + make_interval(months => n::int)
    WHEN 'week' THEN t + make_interval(weeks => n::int)
    WHEN 'day' THEN t + make_interval(days => n::int)
    WHEN 'hour' THEN t + n * interval '1 hour'
    WHEN 'minute' THEN t + n * interval '1 minute'
    WHEN 'second' THEN t + n * interval '1 second'
    WHEN 'millisecond' THEN t + n * interval '1 millisecond'
    WHEN 'microsecond' THEN t + n * interval '1 microsecond' END;
END $$;
CREATE OR REPLACE FUNCTION _dev_redshift.dateadd(p text, n bigint, t date) RETURNS timestamp
LANGUAGE sql IMMUTABLE AS $$ SELECT _dev_redshift.dateadd(p, n, t::timestamp) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.dateadd(p text, n bigint, t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT _dev_redshift.dateadd(p, n, t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;
CREATE OR REPLACE FUNCTION _dev_redshift.dateadd(p text, n bigint, t text) RETURNS timestamp
LANGUAGE sql STABLE AS $$ SELECT _dev_redshift.dateadd(p, n, t::timestamp) $$;

-- DATEDIFF counts the date-part boundaries crossed between the two values, as Redshift does.
CREATE OR REPLACE FUNCTION _dev_redshift.datediff(p text, a timestamp, b timestamp) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE f text := _dev_redshift.datepart(p);
BEGIN
  RETURN CASE f
    WHEN 'millennium' THEN floor((extract(year FROM b) - 1) / 1000) - floor((extract(year FROM a) - 1) / 1000)
    WHEN 'century' THEN floor((extract(year FROM b) - 1) / 100) - floor((extract(year FROM a) - 1) / 100)
    WHEN 'decade' THEN floor(extract(year FROM b) / 10) - floor(extract(year FROM a) / 10)
    WHEN 'year' THEN extract(year FROM b) - extract(year FROM a)
    WHEN 'quarter' THEN (extract(year FROM b) * 4 + extract(quarter FROM b)) - (extract(year FROM a) * 4 + extract(quarter FROM a))
    WHEN 'month' THEN (extract(year FROM b) * 12 + extract(month FROM b)) - (extract(year FROM a) * 12 + extract(month FROM a))
    WHEN 'week' THEN (date_trunc('week', b)::date - date_trunc('week', a)::date) / 7
    WHEN 'day' THEN b::date - a::date
    WHEN 'hour' THEN floor(extract(epoch FROM date_trunc('hour', b)) / 3600) - floor(extract(epoch FROM date_trunc('hour', a)) / 3600)
    WHEN 'minute' THEN floor(extract(epoch FROM date_trunc('minute', b)) / 60) - floor(extract(epoch FROM date_trunc('minute', a)) / 60)
    WHEN 'second' THEN floor(extract(epoch FROM date_trunc('second', b))) - floor(extract(epoch FROM date_trunc('second', a)))
    WHEN 'millisecond' THEN floor(extract(epoch FROM date_trunc('milliseconds', b)) * 1000) - floor(extract(epoch FROM date_trunc('milliseconds', a)) * 1000)
    WHEN 'microsecond' THEN round(extract(epoch FROM b) * 1000000) - round(extract(epoch FROM a) * 1000000)
    ELSE NULL END;
  -- unreachable for a NULL part: the CASE yields NULL and the check below raises.
END $$;
CREATE OR REPLACE FUNCTION _dev_redshift.datediff(p text, a date, b date) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT _dev_redshift.datediff(p, a::timestamp, b::timestamp) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.datediff(p text, a timestamptz, b timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT _dev_redshift.datediff(p, a AT TIME ZONE 'UTC', b AT TIME ZONE 'UTC') $$;
CREATE OR REPLACE FUNCTION _dev_redshift.datediff(p text, a text, b text) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT _dev_redshift.datediff(p, a::timestamp, b::timestamp) $$;

CREATE OR REPLACE FUNCTION _dev_redshift.trunc(t timestamp) RETURNS date LANGUAGE sql IMMUTABLE AS $$ SELECT t::date $$;
CREATE OR REPLACE FUNCTION _dev_redshift.trunc(t timestamptz) RETURNS date LANGUAGE sql STABLE AS $$ SELECT (t AT TIME ZONE 'UTC')::date $$;
CREATE OR REPLACE FUNCTION _dev_redshift.trunc(n numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.trunc(n) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.trunc(n numeric, s int) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.trunc(n, s) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.trunc(n double precision) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.trunc(n) $$;

-- SUM of SMALLINT, INTEGER or BIGINT is a BIGINT on Redshift, which overflows (22003) past 2^63; PostgreSQL's
-- sum(bigint) is a numeric that never does.
CREATE OR REPLACE FUNCTION _dev_redshift.sum_int8(acc bigint, v bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc + v END $$;
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(bigint) (SFUNC = _dev_redshift.sum_int8, STYPE = bigint);
CREATE OR REPLACE FUNCTION _dev_redshift.sum_int4(acc bigint, v integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc + v END $$;
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(integer) (SFUNC = _dev_redshift.sum_int4, STYPE = bigint);
CREATE OR REPLACE FUNCTION _dev_redshift.sum_int2(acc bigint, v smallint) RETURNS bigint LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc + v END $$;
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(smallint) (SFUNC = _dev_redshift.sum_int2, STYPE = bigint);
CREATE OR REPLACE FUNCTION _dev_redshift.sum_float8(acc double precision, v double precision) RETURNS double precision LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc + v END $$;
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(double precision) (SFUNC = _dev_redshift.sum_float8, STYPE = double precision);
CREATE OR REPLACE FUNCTION _dev_redshift.sum_float4(acc double precision, v real) RETURNS double precision LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL THEN v ELSE acc + v END $$;
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(real) (SFUNC = _dev_redshift.sum_float4, STYPE = double precision);
CREATE OR REPLACE AGGREGATE _dev_redshift.sum(numeric) (SFUNC = numeric_add, STYPE = numeric);

CREATE OR REPLACE FUNCTION _dev_redshift.nvl2(e anyelement, a anycompatible, b anycompatible) RETURNS anycompatible
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN e IS NOT NULL THEN a ELSE b END $$;

-- SUPER as jsonb. A string inside a SUPER value is at most 65,535 bytes; a value at most 16 MB.
CREATE OR REPLACE FUNCTION _dev_redshift.super_ok(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT v IS NULL OR (octet_length(v::text) <= 16 * 1024 * 1024 AND NOT EXISTS (
    SELECT 1 FROM jsonb_path_query(v, 'strict $.**') x
    WHERE jsonb_typeof(x) = 'string' AND octet_length(x #>> '{}') > 65535)) $$;
-- JSON_PARSE: a plain cast (inlined, no subtransaction); the proxy reports PostgreSQL's JSON syntax errors as
-- Redshift's "JSON parsing error", and a SUPER column's CHECK holds the string-length limit.
CREATE OR REPLACE FUNCTION _dev_redshift.json_parse(s text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT s::jsonb $$;
-- CAST(x AS SUPER): a string becomes a SUPER string (not parsed: JSON_PARSE parses), a number a number.
CREATE OR REPLACE FUNCTION _dev_redshift.to_super(v text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT to_jsonb(v) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.to_super(v jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT v $$;
CREATE OR REPLACE FUNCTION _dev_redshift.to_super(v anyelement) RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT to_jsonb(v) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.json_serialize(v jsonb) RETURNS varchar LANGUAGE sql IMMUTABLE
  AS $$ SELECT regexp_replace(v::text, '("(?:[^"\\]|\\.)*")|\s+', '\1', 'g') $$;
CREATE OR REPLACE FUNCTION _dev_redshift.from_hex(s text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ SELECT decode(s, 'hex') $$;
CREATE OR REPLACE FUNCTION _dev_redshift.to_hex(b bytea) RETURNS varchar LANGUAGE sql IMMUTABLE AS $$ SELECT encode(b, 'hex') $$;
-- FROM_VARBYTE(binary, format): hex, binary (bits), utf8 / utf-8 / utf_8, base64 (no line breaks); others refused.
CREATE OR REPLACE FUNCTION _dev_redshift.from_varbyte(b bytea, f text) RETURNS varchar LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  CASE lower(f)
    WHEN 'hex' THEN RETURN encode(b, 'hex');
    WHEN 'base64' THEN RETURN replace(encode(b, 'base64'), chr(10), '');
    WHEN 'utf8', 'utf-8', 'utf_8' THEN RETURN convert_from(b, 'UTF8');
    WHEN 'binary' THEN RETURN (SELECT coalesce(string_agg(lpad(get_byte(b, i)::bit(8)::text, 8, '0'), '' ORDER BY i), '') FROM generate_series(0, length(b) - 1) i);
    ELSE RAISE EXCEPTION 'invalid format: %', f USING ERRCODE = '22023';
  END CASE;
END $$;
CREATE OR REPLACE FUNCTION _dev_redshift.to_hex(n bigint) RETURNS varchar LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.to_hex(n) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.json_extract_path_text(j text, VARIADIC p text[]) RETURNS varchar
  LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.json_extract_path_text(j::json, VARIADIC p) $$;
CREATE OR REPLACE FUNCTION _dev_redshift.is_valid_json(j text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM j::json; RETURN true; EXCEPTION WHEN others THEN RETURN false; END $$;

-- Exact row count of a table (for SVV_TABLE_INFO.tbl_rows; dev-sized tables only).
CREATE OR REPLACE FUNCTION _dev_redshift.row_count(r regclass) RETURNS bigint LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog AS $$
DECLARE n bigint;
BEGIN EXECUTE format('SELECT count(*) FROM %s', r) INTO n; RETURN n;
EXCEPTION WHEN others THEN RETURN NULL; END $$;

-- ---------------------------------------------------------------- DDL hooks
-- After CREATE TABLE / ALTER TABLE in a dev-redshift session: PRIMARY KEY and UNIQUE constraints that
-- PostgreSQL created (with an index) are recorded in key_constraints and dropped, so they are informational
-- only, as on Redshift. Table attributes and FOREIGN KEYs the proxy took out of the statement arrive as
-- /*dev_redshift:{json}:dev_redshift*/ markers in the statement text.
CREATE OR REPLACE FUNCTION _dev_redshift.on_ddl() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog AS $$
DECLARE r record; c record; m text; j jsonb; rel text;
BEGIN
  IF coalesce(current_setting('dev_redshift.session', true), '') <> 'on'
     OR coalesce(current_setting('dev_redshift.in_hook', true), '') = 'on' THEN RETURN; END IF;
  PERFORM set_config('dev_redshift.in_hook', 'on', true);
  FOR r IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'table' LOOP
    SELECT relname INTO rel FROM pg_class WHERE oid = r.objid;
    FOR c IN SELECT con.conname, con.contype, con.conkey FROM pg_constraint con
             WHERE con.conrelid = r.objid AND con.contype IN ('p', 'u') LOOP
      INSERT INTO _dev_redshift.key_constraints (relid, conname, contype, conkey) VALUES (r.objid, c.conname, c.contype, c.conkey);
      EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.objid::regclass, c.conname);
    END LOOP;
    FOR m IN SELECT (regexp_matches(current_query(), '/\*dev_redshift:(.*?):dev_redshift\*/', 'g'))[1] LOOP
      j := m::jsonb;
      CONTINUE WHEN j->>'table' IS DISTINCT FROM rel;
      IF j ? 'attrs' THEN
        INSERT INTO _dev_redshift.table_attrs (relid, diststyle, distkey, sortkey, sortstyle, encodings)
        VALUES (r.objid, j->'attrs'->>'diststyle', j->'attrs'->>'distkey',
                ARRAY(SELECT jsonb_array_elements_text(coalesce(j->'attrs'->'sortkey', '[]'))),
                j->'attrs'->>'sortstyle', j->'attrs'->'encodings')
        ON CONFLICT (relid) DO NOTHING;
      END IF;
      IF j ? 'fks' THEN
        INSERT INTO _dev_redshift.key_constraints (relid, conname, contype, conkey, ref_table, ref_columns)
        SELECT r.objid, coalesce(fk->>'name', rel || '_' || (fk->'columns'->>0) || '_fkey'), 'f',
               ARRAY(SELECT a.attnum FROM jsonb_array_elements_text(fk->'columns') WITH ORDINALITY col(name, i)
                     JOIN pg_attribute a ON a.attrelid = r.objid AND a.attname = col.name ORDER BY col.i),
               fk->>'ref_table', ARRAY(SELECT jsonb_array_elements_text(coalesce(fk->'ref_columns', '[]')))
        FROM jsonb_array_elements(j->'fks') fk;
      END IF;
    END LOOP;
  END LOOP;
  PERFORM set_config('dev_redshift.in_hook', 'off', true);
END $$;
-- Redshift's catalogs are not locked in a transaction (DDL is visible on commit), so this bookkeeping must never
-- be what makes concurrent DDL conflict: it skips the hook's own DROP CONSTRAINT and statements that drop no
-- table, and finds rows by index (tuple-level predicate locks) instead of scanning the tables.
CREATE OR REPLACE FUNCTION _dev_redshift.on_drop() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog SET enable_seqscan = off SET enable_bitmapscan = off AS $$
BEGIN
  IF coalesce(current_setting('dev_redshift.in_hook', true), '') = 'on'
     OR NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table') THEN RETURN; END IF;
  DELETE FROM _dev_redshift.key_constraints WHERE relid IN (SELECT objid FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table');
  DELETE FROM _dev_redshift.table_attrs WHERE relid IN (SELECT objid FROM pg_event_trigger_dropped_objects() WHERE object_type = 'table');
END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '_dev_redshift_ddl') THEN
    CREATE EVENT TRIGGER _dev_redshift_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO')
      EXECUTE FUNCTION _dev_redshift.on_ddl();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '_dev_redshift_drop') THEN
    CREATE EVENT TRIGGER _dev_redshift_drop ON sql_drop EXECUTE FUNCTION _dev_redshift.on_drop();
  END IF;
END $$;

-- ALTER TABLE t ALTER COLUMN c TYPE varchar(n), as Redshift allows it: VARCHAR only, not on key columns or
-- columns with a default, never below the longest value (the proxy refuses it inside a transaction block).
CREATE OR REPLACE PROCEDURE _dev_redshift.alter_column_type(tbl text, col text, typ text, len int)
LANGUAGE plpgsql AS $$
DECLARE rel regclass := tbl::regclass; att record; longest int; c record;
BEGIN
  SELECT a.attnum, a.atttypid, a.atthasdef INTO att FROM pg_attribute a
  WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, (SELECT relname FROM pg_class WHERE oid = rel) USING ERRCODE = '42703';
  END IF;
  IF att.atttypid <> 'varchar'::regtype OR typ <> 'varchar' THEN
    RAISE EXCEPTION 'target data type % is not supported', typ USING ERRCODE = '0A000',
      DETAIL = 'ALTER COLUMN TYPE only changes the size of a VARCHAR column';
  END IF;
  IF EXISTS (SELECT 1 FROM _dev_redshift.key_constraints k WHERE k.relid = rel AND att.attnum = ANY (k.conkey)) THEN
    RAISE EXCEPTION 'cannot alter column "%" of relation "%", target column is a key column (PRIMARY KEY, UNIQUE or FOREIGN KEY)',
      col, (SELECT relname FROM pg_class WHERE oid = rel) USING ERRCODE = '0A000';
  END IF;
  IF att.atthasdef THEN
    RAISE EXCEPTION 'cannot alter column "%" of relation "%", target column has a default value',
      col, (SELECT relname FROM pg_class WHERE oid = rel) USING ERRCODE = '0A000';
  END IF;
  EXECUTE format('SELECT max(octet_length(%I)) FROM %s', col, rel) INTO longest;
  IF longest > len THEN
    RAISE EXCEPTION 'cannot alter column "%" of relation "%", target column size % should be greater or equal to current maximum column size %',
      col, (SELECT relname FROM pg_class WHERE oid = rel), len, longest USING ERRCODE = '0A000';
  END IF;
  FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = rel AND contype = 'c' AND conname LIKE '\_rsvc\_%' AND conkey = ARRAY[att.attnum]::int2[] LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', rel, c.conname);
  END LOOP;
  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE varchar(%s)', rel, col, len);
  EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (octet_length(%I) <= %s)', rel,
                 '_rsvc_' || len || '_' || substr(md5(col), 1, 10), col, len);
END $$;

-- ALTER TABLE t DROP COLUMN c [RESTRICT | CASCADE]: RESTRICT (the default) refuses a column that a key
-- constraint uses; a DISTKEY or SORTKEY column is never dropped.
CREATE OR REPLACE PROCEDURE _dev_redshift.drop_column(tbl text, col text, cascade boolean, if_exists boolean)
LANGUAGE plpgsql AS $$
DECLARE rel regclass := tbl::regclass; num int2; relname text; attrs record;
BEGIN
  SELECT c.relname INTO relname FROM pg_class c WHERE c.oid = rel;
  SELECT a.attnum INTO num FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
  IF NOT FOUND THEN
    IF if_exists THEN RETURN; END IF;
    RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, relname USING ERRCODE = '42703';
  END IF;
  SELECT * INTO attrs FROM _dev_redshift.table_attrs WHERE relid = rel;
  IF attrs.distkey = col THEN
    RAISE EXCEPTION 'cannot drop distkey column "%"', col USING ERRCODE = '0A000';
  END IF;
  IF col = ANY (attrs.sortkey) THEN
    RAISE EXCEPTION 'cannot drop sortkey column "%"', col USING ERRCODE = '0A000';
  END IF;
  IF EXISTS (SELECT 1 FROM _dev_redshift.key_constraints k WHERE k.relid = rel AND num = ANY (k.conkey)) THEN
    IF NOT cascade THEN
      RAISE EXCEPTION 'cannot drop table % column % because other objects depend on it', relname, col USING ERRCODE = '2BP01',
        HINT = 'Use DROP ... CASCADE to drop the dependent objects too.';
    END IF;
    DELETE FROM _dev_redshift.key_constraints k WHERE k.relid = rel AND num = ANY (k.conkey);
  END IF;
  EXECUTE format('ALTER TABLE %s DROP COLUMN %I%s', rel, col, CASE WHEN cascade THEN ' CASCADE' ELSE '' END);
END $$;

-- ---------------------------------------------------------------- views (the proxy maps the names)
-- Redshift type names as PG_TABLE_DEF / SVV_COLUMNS show them.
CREATE OR REPLACE FUNCTION _dev_redshift.type_name(t oid, m int) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT CASE t WHEN 'jsonb'::regtype THEN 'super' WHEN 'bytea'::regtype THEN 'varbyte'
         WHEN 'timestamp'::regtype THEN 'timestamp without time zone' ELSE format_type(t, m) END $$;

CREATE OR REPLACE VIEW _dev_redshift.pg_table_def AS
SELECT n.nspname::name AS schemaname, c.relname::name AS tablename, a.attname::name AS "column",
       _dev_redshift.type_name(a.atttypid, a.atttypmod)::text AS type,
       coalesce(ta.encodings->>a.attname, CASE WHEN a.attname = ANY (coalesce(ta.sortkey, '{}')) THEN 'none' ELSE
         CASE WHEN a.atttypid IN ('varchar'::regtype, 'bpchar'::regtype) THEN 'lzo' WHEN a.atttypid IN ('bool'::regtype, 'jsonb'::regtype) THEN 'none' ELSE 'az64' END END)::character(32) AS encoding,
       (ta.distkey IS NOT DISTINCT FROM a.attname::text AND ta.distkey IS NOT NULL) AS distkey,
       coalesce((SELECT CASE WHEN ta.sortstyle = 'interleaved' THEN -s.i ELSE s.i END::int
                 FROM unnest(ta.sortkey) WITH ORDINALITY s(name, i) WHERE s.name = a.attname), 0) AS sortkey,
       a.attnotnull AS notnull
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN _dev_redshift.table_attrs ta ON ta.relid = c.oid
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) AND n.nspname <> '_dev_redshift'
  AND pg_table_is_visible(c.oid) AND has_table_privilege(c.oid, 'SELECT');
GRANT SELECT ON _dev_redshift.pg_table_def TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.svv_table_info AS
SELECT * FROM (
SELECT current_database()::text AS database, n.nspname::text AS schema, c.oid::int AS table_id, c.relname::text AS "table",
       CASE WHEN ta.encodings IS NOT NULL THEN 'Y' ELSE 'N' END::text AS encoded,
       CASE coalesce(ta.diststyle, CASE WHEN ta.distkey IS NOT NULL THEN 'key' ELSE 'auto' END)
         WHEN 'key' THEN 'KEY(' || ta.distkey || ')' WHEN 'even' THEN 'EVEN' WHEN 'all' THEN 'ALL' ELSE 'AUTO(EVEN)' END::text AS diststyle,
       coalesce(ta.sortkey[1], CASE WHEN ta.sortstyle = 'auto' THEN 'AUTO(SORTKEY)' END)::text AS sortkey1,
       (SELECT max(CASE WHEN a.atttypid = 'varchar'::regtype THEN a.atttypmod - 4 END) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::int AS max_varchar,
       CASE WHEN ta.sortkey[1] IS NOT NULL THEN 'none' END::text AS sortkey1_enc,
       coalesce(cardinality(ta.sortkey), 0)::int AS sortkey_num,
       greatest(1, pg_total_relation_size(c.oid) / 1048576)::bigint AS size,
       0.01::numeric(10, 4) AS pct_used, 0::bigint AS empty, 0.00::numeric(5, 2) AS unsorted, 0.00::numeric(5, 2) AS stats_off,
       _dev_redshift.row_count(c.oid)::numeric(38, 0) AS tbl_rows,
       NULL::numeric(19, 2) AS skew_sortkey1, 1.00::numeric(19, 2) AS skew_rows,
       _dev_redshift.row_count(c.oid)::numeric(38, 0) AS estimated_visible_rows,
       NULL::text AS risk_event, NULL::numeric(12, 2) AS vacuum_sort_benefit, NULL::timestamp AS create_time
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN _dev_redshift.table_attrs ta ON ta.relid = c.oid
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_dev_redshift', 'pg_toast')
  AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%') t
WHERE tbl_rows > 0;
-- SVV_TABLE_INFO is visible only to superusers unless SELECT on it is granted.
REVOKE ALL ON _dev_redshift.svv_table_info FROM PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.svv_columns AS
SELECT c.table_catalog::text AS catalog_name, c.table_schema::text AS schema_name, c.table_name::text AS table_name,
       c.column_name::text AS column_name, c.ordinal_position::int AS ordinal_position, c.column_default::text AS column_default,
       c.is_nullable::text AS is_nullable,
       CASE c.data_type WHEN 'jsonb' THEN 'super' WHEN 'bytea' THEN 'binary varying' ELSE c.data_type END::text AS data_type,
       c.character_maximum_length::int AS character_maximum_length, c.numeric_precision::int AS numeric_precision,
       c.numeric_precision_radix::int AS numeric_precision_radix, c.numeric_scale::int AS numeric_scale,
       c.datetime_precision::int AS datetime_precision, c.interval_type::text AS interval_type,
       c.interval_precision::text AS interval_precision, NULL::text AS character_set_catalog, NULL::text AS character_set_schema,
       NULL::text AS character_set_name, NULL::text AS collation_catalog, NULL::text AS collation_schema,
       NULL::text AS collation_name, NULL::text AS domain_name, NULL::text AS remarks
FROM information_schema.columns c WHERE c.table_schema NOT IN ('_dev_redshift');
GRANT SELECT ON _dev_redshift.svv_columns TO PUBLIC;

-- information_schema as the proxy shows it: without _dev_redshift, with Redshift type names, with the
-- informational key constraints and without the byte-length CHECKs (Redshift has no CHECK constraints).
CREATE OR REPLACE VIEW _dev_redshift.is_columns AS
SELECT c.table_catalog, c.table_schema, c.table_name, c.column_name, c.ordinal_position, c.column_default, c.is_nullable,
       (CASE c.data_type WHEN 'jsonb' THEN 'super' WHEN 'bytea' THEN 'binary varying' ELSE c.data_type END)::information_schema.character_data AS data_type,
       (CASE WHEN c.data_type = 'bytea' THEN (SELECT substring(pc.conname FROM '^_rsvb_([0-9]+)_')::int FROM pg_constraint pc
               JOIN pg_class r ON r.oid = pc.conrelid JOIN pg_namespace ns ON ns.oid = r.relnamespace
               JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = ANY (pc.conkey)
               WHERE ns.nspname = c.table_schema AND r.relname = c.table_name AND a.attname = c.column_name
                 AND pc.conname LIKE '\_rsvb\_%' LIMIT 1)
             ELSE c.character_maximum_length END)::information_schema.cardinal_number AS character_maximum_length,
       c.character_octet_length, c.numeric_precision, c.numeric_precision_radix, c.numeric_scale, c.datetime_precision,
       c.interval_type, c.interval_precision, c.character_set_catalog, c.character_set_schema, c.character_set_name,
       c.collation_catalog, c.collation_schema, c.collation_name, c.domain_catalog, c.domain_schema, c.domain_name,
       c.udt_catalog, c.udt_schema, c.udt_name, c.scope_catalog, c.scope_schema, c.scope_name, c.maximum_cardinality,
       c.dtd_identifier, c.is_self_referencing, c.is_identity, c.identity_generation, c.identity_start, c.identity_increment,
       c.identity_maximum, c.identity_minimum, c.identity_cycle, c.is_generated, c.generation_expression, c.is_updatable
FROM information_schema.columns c WHERE c.table_schema <> '_dev_redshift';
GRANT SELECT ON _dev_redshift.is_columns TO PUBLIC;
CREATE OR REPLACE VIEW _dev_redshift.is_tables AS
SELECT * FROM information_schema.tables WHERE table_schema <> '_dev_redshift';
GRANT SELECT ON _dev_redshift.is_tables TO PUBLIC;
CREATE OR REPLACE VIEW _dev_redshift.is_schemata AS
SELECT * FROM information_schema.schemata WHERE schema_name <> '_dev_redshift';
GRANT SELECT ON _dev_redshift.is_schemata TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.is_table_constraints AS
SELECT * FROM information_schema.table_constraints WHERE constraint_type <> 'CHECK' AND table_schema <> '_dev_redshift'
UNION ALL
SELECT current_database()::information_schema.sql_identifier, n.nspname::information_schema.sql_identifier,
       k.conname::information_schema.sql_identifier, current_database()::information_schema.sql_identifier,
       n.nspname::information_schema.sql_identifier, c.relname::information_schema.sql_identifier,
       (CASE k.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' ELSE 'FOREIGN KEY' END)::information_schema.character_data,
       'NO'::information_schema.yes_or_no, 'NO'::information_schema.yes_or_no, 'NO'::information_schema.yes_or_no,
       (CASE WHEN k.contype = 'u' THEN 'YES' END)::information_schema.yes_or_no
FROM _dev_redshift.key_constraints k JOIN pg_class c ON c.oid = k.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE pg_has_role(c.relowner, 'USAGE') OR has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER');
GRANT SELECT ON _dev_redshift.is_table_constraints TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.is_key_column_usage AS
SELECT * FROM information_schema.key_column_usage WHERE table_schema <> '_dev_redshift'
UNION ALL
SELECT current_database()::information_schema.sql_identifier, n.nspname::information_schema.sql_identifier,
       k.conname::information_schema.sql_identifier, current_database()::information_schema.sql_identifier,
       n.nspname::information_schema.sql_identifier, c.relname::information_schema.sql_identifier,
       a.attname::information_schema.sql_identifier, col.i::information_schema.cardinal_number,
       (CASE WHEN k.contype = 'f' THEN col.i END)::information_schema.cardinal_number
FROM _dev_redshift.key_constraints k JOIN pg_class c ON c.oid = k.relid JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY col(attnum, i)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = col.attnum
WHERE pg_has_role(c.relowner, 'USAGE') OR has_column_privilege(c.oid, a.attnum, 'SELECT, INSERT, UPDATE, REFERENCES');
GRANT SELECT ON _dev_redshift.is_key_column_usage TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.stv_slices AS
SELECT 0::int AS node, s::int AS slice, s::int AS localslice, 'D'::character(1) AS type
FROM generate_series(0, (SELECT value::int FROM _dev_redshift.settings WHERE name = 'slices') - 1) s;
GRANT SELECT ON _dev_redshift.stv_slices TO PUBLIC;

-- Open transactions: one row per lock a backend in a transaction holds (pg_locks + pg_stat_activity).
CREATE OR REPLACE VIEW _dev_redshift.svv_transactions AS
SELECT a.usename::text AS txn_owner, a.datname::text AS txn_db,
       coalesce(a.backend_xid::text::bigint, ('x' || lpad(split_part(l.virtualtransaction, '/', 2), 16, '0'))::bit(64)::bigint) AS xid,
       l.pid AS pid, (a.xact_start AT TIME ZONE 'UTC')::timestamp AS txn_start,
       l.mode::text AS lock_mode, l.locktype::text AS lockable_object_type, l.relation::bigint AS relation, l.granted AS granted
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE a.xact_start IS NOT NULL AND a.datname = current_database() AND a.application_name <> 'dev-redshift-admin'
  AND l.locktype IN ('relation', 'transactionid') AND (l.relation IS NULL OR l.relation >= 16384);
GRANT SELECT ON _dev_redshift.svv_transactions TO PUBLIC;

-- SVV_USER_INFO: visible to all users; superusers see every row, others their own. syslog_access is
-- UNRESTRICTED for members of pg_read_all_stats (the PostgreSQL grant that lets a login see other sessions).
CREATE OR REPLACE VIEW _dev_redshift.svv_user_info AS
SELECT r.rolname::text AS user_name, r.oid::int AS user_id, r.rolcreatedb AS createdb, r.rolsuper AS superuser,
       false AS catalog_update, CASE WHEN r.rolconnlimit < 0 THEN 'UNLIMITED' ELSE r.rolconnlimit::text END AS connection_limit,
       CASE WHEN r.rolsuper OR pg_has_role(r.oid, 'pg_read_all_stats', 'MEMBER') THEN 'UNRESTRICTED' ELSE 'RESTRICTED' END AS syslog_access,
       NULL::timestamp AS last_ddl_ts, 0 AS session_timeout, NULL::text AS external_user_id
FROM pg_roles r
WHERE r.rolcanlogin AND (r.rolname = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
GRANT SELECT ON _dev_redshift.svv_user_info TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.stv_inflight AS
SELECT a.usesysid::int AS userid, 0::int AS slice, a.pid::bigint AS query, 'default'::character(320) AS label,
       coalesce(a.backend_xid::text::bigint, 0) AS xid, a.pid AS pid, (a.query_start AT TIME ZONE 'UTC')::timestamp AS starttime,
       left(a.query, 100)::character(100) AS text, 0::int AS suspended, 0::int AS insert_pristine, 0::int AS concurrency_scaling_status
FROM pg_stat_activity a
WHERE a.state = 'active' AND a.backend_type = 'client backend' AND a.datname = current_database()
  AND a.application_name <> 'dev-redshift-admin';
GRANT SELECT ON _dev_redshift.stv_inflight TO PUBLIC;

CREATE OR REPLACE VIEW _dev_redshift.stl_load_errors AS
SELECT userid, slice, tbl::int AS tbl, starttime, session, query::int AS query, filename::character(256) AS filename,
       line_number, colname::character(127) AS colname, type::character(10) AS type, col_length::character(10) AS col_length,
       position, raw_line::character(1024) AS raw_line, raw_field_value::character(1024) AS raw_field_value,
       err_code, err_reason::character(100) AS err_reason, 0::int AS is_partial, 0::bigint AS start_offset
FROM _dev_redshift.load_errors WHERE dbname = current_database();
GRANT SELECT ON _dev_redshift.stl_load_errors TO PUBLIC;
CREATE OR REPLACE VIEW _dev_redshift.sys_load_error_detail AS
SELECT userid AS user_id, query AS query_id, xid AS transaction_id, session AS session_id,
       dbname::character(64) AS database_name, tbl::int AS table_id, starttime AS start_time,
       filename::character(256) AS file_name, line_number, colname::character(127) AS column_name,
       type::character(10) AS column_type, col_length::character(10) AS column_length, position,
       err_code AS error_code, err_reason::character(512) AS error_message
FROM _dev_redshift.load_errors WHERE dbname = current_database();
GRANT SELECT ON _dev_redshift.sys_load_error_detail TO PUBLIC;

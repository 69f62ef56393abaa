"""COPY from S3 and UNLOAD to S3 as Redshift runs them, plus the proxy's own backend connection (catalog install,
STL_LOAD_ERRORS rows, which Redshift keeps even when the COPY's transaction rolls back)."""
from __future__ import annotations

import asyncio
import bz2
import csv
import datetime as dt
import decimal
import gzip
import hashlib
import io
import json
import os
import re
import struct
import threading

import boto3
import psycopg
import zstandard
from botocore.config import Config
from botocore.exceptions import ClientError

from sqlrules import Refusal, Tok, Translator, syntax_error, tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
CREDENTIALS_FORMAT = ("Invalid credentials. Must be of the format: credentials "
                      "'aws_access_key_id=<access-key-id>;aws_secret_access_key=<secret-access-key>[;token=<temporary-session-token>]'")
NOT_EMPTY = ("Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, "
             "manually removing the target files in S3, or using the ALLOWOVERWRITE option.")


def err(code: str, text: str, detail: str | None = None) -> dict[str, str]:
    f = {"S": "ERROR", "V": "ERROR", "C": code, "M": text}
    if detail:
        f["D"] = detail
    return f


class Admin:
    """The proxy's own autocommit connections to the backend (one per database), as the backend superuser."""

    def __init__(self, args):
        self.args = args
        self.conns: dict[str, psycopg.Connection] = {}
        self.lock = threading.Lock()

    def conn(self, database: str) -> psycopg.Connection:
        c = self.conns.get(database)
        if c is None or c.closed:
            c = psycopg.connect(host=self.args.backend_host, port=self.args.backend_port, user=self.args.admin_user,
                                dbname=database, application_name="dev-redshift-admin", autocommit=True)
            self.conns[database] = c
        return c

    def install_catalog(self, database: str) -> None:
        with open(os.path.join(HERE, "catalog.sql"), encoding="utf-8") as f:
            text = f.read().replace(":slices", str(int(self.args.slices)))
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self.lock:
            c = self.conn(database)
            try:
                row = c.execute("SELECT value FROM _dev_redshift.settings WHERE name = 'catalog'").fetchone()
                if row and row[0] == digest:
                    return
            except psycopg.Error:
                pass
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(724851)")  # the backend's own lock: one installer at a time
                c.execute("SET LOCAL client_min_messages = warning")
                c.execute(text)
                c.execute("INSERT INTO _dev_redshift.settings VALUES ('catalog', %s) ON CONFLICT (name) DO UPDATE SET value = excluded.value", (digest,))

    def record_load_errors(self, database: str, rows: list[tuple]) -> None:
        with self.lock:
            c = self.conn(database)
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO _dev_redshift.load_errors (userid, slice, tbl, starttime, session, query, filename, line_number, colname,"
                    " type, col_length, position, raw_line, raw_field_value, err_code, err_reason, xid, dbname)"
                    " VALUES (%s, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


class S3:
    def __init__(self, args):
        self.args = args
        self.clients: dict[tuple, object] = {}
        self.lock = threading.Lock()

    def client(self, key: str | None, secret: str | None, token: str | None, region: str | None):
        k = (key or self.args.s3_access_key, secret or self.args.s3_secret_key, token, region or self.args.region)
        with self.lock:
            c = self.clients.get(k)
            if c is None:
                c = boto3.client("s3", endpoint_url=self.args.s3_endpoint, aws_access_key_id=k[0], aws_secret_access_key=k[1],
                                 aws_session_token=k[2], region_name=k[3],
                                 config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
                self.clients[k] = c
            return c


def split_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise Refusal("XX000", f"Invalid S3 path: '{url}'", "COPY and UNLOAD read and write s3://bucket/key paths.")
    rest = url[5:]
    bucket, _, key = rest.partition("/")
    return bucket, key


# ------------------------------------------------------------------------------------------------ option parsing
class Options:
    def __init__(self):
        self.values: dict[str, object] = {}

    def __contains__(self, k):
        return k in self.values

    def get(self, k, default=None):
        return self.values.get(k, default)


def _unquote(t: Tok) -> str:
    if t.kind != "str":
        raise syntax_error(t.text)
    s = t.text
    if s[0] in "eE":
        return s[2:-1].encode().decode("unicode_escape")
    return s[1:-1].replace("''", "'")


def parse_auth_and_options(sig: list[Tok], k: int, command: str) -> Options:
    """Authorization and options after FROM 's3://…' / TO 's3://…'."""
    o = Options()
    v = o.values

    def take_str(i):
        if i < len(sig) and sig[i].kind == "word" and sig[i].low == "as":
            i += 1
        if i >= len(sig):
            raise syntax_error("end of input")
        return _unquote(sig[i]), i + 1

    def take_word(i):
        if i < len(sig) and sig[i].kind == "word" and sig[i].low == "as":
            i += 1
        if i >= len(sig):
            raise syntax_error("end of input")
        return sig[i].text, i + 1

    while k < len(sig):
        t = sig[k]
        w = t.low if t.kind == "word" else None
        if t.text == ";":
            break
        if w == "with" or t.text == ",":
            k += 1
            continue
        if w == "iam_role":
            if k + 1 < len(sig) and sig[k + 1].low == "default":
                v["iam_role"], k = "default", k + 2
            else:
                v["iam_role"], k = take_str(k + 1)
        elif w == "credentials":
            v["credentials"], k = take_str(k + 1)
        elif w in ("access_key_id", "secret_access_key", "session_token", "region", "manifest_file", "kms_key_id",
                   "master_symmetric_key", "extension"):
            v[w], k = take_str(k + 1)
        elif w == "format":
            k += 1
            if sig[k].low == "as":
                k += 1
            continue
        elif w in ("csv", "parquet", "orc", "avro", "fixedwidth", "shapefile"):
            v["format"] = w
            k += 1
            if w == "csv" and k < len(sig) and sig[k].low == "quote":
                v["quote"], k = take_str(k + 1)
            elif w == "fixedwidth" and k < len(sig) and sig[k].kind == "str":
                k += 1
        elif w == "json":
            v["format"] = "json"
            k += 1
            if k < len(sig) and (sig[k].kind == "str" or (sig[k].low == "as" and k + 1 < len(sig) and sig[k + 1].kind == "str")):
                v["json"], k = take_str(k)
        elif w == "quote":
            v["quote"], k = take_str(k + 1)
        elif w == "delimiter":
            v["delimiter"], k = take_str(k + 1)
        elif w in ("gzip", "zstd", "bzip2", "lzop", "manifest", "emptyasnull", "blanksasnull", "truncatecolumns",
                   "trimblanks", "removequotes", "escape", "fillrecord", "acceptanydate", "ignoreblanklines",
                   "explicit_ids", "noload", "roundec", "header", "addquotes", "allowoverwrite", "cleanpath",
                   "encrypted", "verbose", "ignoreallerrors"):
            v[w] = True
            k += 1
            if w == "manifest" and k < len(sig) and sig[k].low == "verbose":
                v["verbose"] = True
                k += 1
            elif w == "encrypted" and k < len(sig) and sig[k].low == "auto":
                k += 1
        elif w in ("timeformat", "dateformat"):
            v[w], k = take_str(k + 1)
        elif w == "acceptinvchars":
            v["acceptinvchars"] = "?"
            k += 1
            if k < len(sig) and (sig[k].kind == "str" or sig[k].low == "as"):
                v["acceptinvchars"], k = take_str(k)
        elif w == "null":
            v["null"], k = take_str(k + 1)
        elif w in ("ignoreheader", "maxerror", "comprows"):
            s, k = take_word(k + 1)
            try:
                v[w] = int(s)
            except ValueError:
                raise syntax_error(s)
        elif w in ("compupdate", "statupdate"):
            k += 1
            if k < len(sig) and sig[k].low in ("on", "off", "true", "false", "preset"):
                k += 1
        elif w == "encoding":
            enc, k = take_word(k + 1)
            if enc.lower() not in ("utf8", "utf-8"):
                raise Refusal("0A000", f"ENCODING {enc} is not supported by dev-redshift (UTF8 only)")
        elif w == "parallel":
            k += 1
            v["parallel"] = True
            if k < len(sig) and sig[k].low in ("on", "true", "off", "false"):
                v["parallel"] = sig[k].low in ("on", "true")
                k += 1
        elif w == "maxfilesize":
            k += 1
            if sig[k].low == "as":
                k += 1
            size = float(sig[k].text)
            k += 1
            unit = "mb"
            if k < len(sig) and sig[k].low in ("mb", "gb"):
                unit = sig[k].low
                k += 1
            v["maxfilesize"] = int(size * (1024 ** 3 if unit == "gb" else 1024 ** 2))
        elif w == "partition":
            raise Refusal("0A000", "UNLOAD ... PARTITION BY is not supported by dev-redshift")
        else:
            raise syntax_error(t.text)
    if not any(x in v for x in ("iam_role", "credentials", "access_key_id")):
        raise Refusal("XX000", f"{command} from/to Amazon S3 needs authorization: IAM_ROLE, CREDENTIALS or ACCESS_KEY_ID and SECRET_ACCESS_KEY",
                      "dev-redshift wording; Redshift refuses a COPY or UNLOAD without authorization.")
    if "access_key_id" in v and "secret_access_key" not in v:
        raise Refusal("XX000", CREDENTIALS_FORMAT)
    if "credentials" in v:
        cred = str(v["credentials"])
        parts = dict(p.split("=", 1) for p in cred.split(";") if "=" in p)
        if not (("aws_iam_role" in parts) or ("aws_access_key_id" in parts and "aws_secret_access_key" in parts)) or " " in cred:
            raise Refusal("XX000", CREDENTIALS_FORMAT)
        v["access_key_id"] = parts.get("aws_access_key_id")
        v["secret_access_key"] = parts.get("aws_secret_access_key")
        v["session_token"] = parts.get("token")
    if "iam_role" in v and v["iam_role"] != "default" and not re.match(r"^arn:aws[\w-]*:iam::\d{12}:role/.+", str(v["iam_role"]).split(",")[0]):
        raise Refusal("XX000", f"Invalid IAM role ARN: {v['iam_role']}", "IAM_ROLE takes 'arn:aws:iam::<account-id>:role/<role-name>'")
    return o


def _sig_tokens(sql: str) -> list[Tok]:
    return [t for t in tokenize(sql) if t.kind not in ("ws", "comment")]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _name(t: Tok) -> str:
    return t.text[1:-1].replace('""', '"').lower() if t.kind == "qident" else t.text.lower()


# ------------------------------------------------------------------------------------------------ COPY
_INT_RE = re.compile(r"^\s*[-+]?\d+\s*$")
_INT_RANGE = {"int2": (-32768, 32767), "int4": (-2147483648, 2147483647), "int8": (-(2 ** 63), 2 ** 63 - 1)}
_BOOL = {"t": "t", "true": "t", "1": "t", "y": "t", "yes": "t", "f": "f", "false": "f", "0": "f", "n": "f", "no": "f"}
_DATE_AUTO = ["%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%m-%d-%Y", "%Y%m%d", "%b %d %Y", "%d %b %Y", "%B %d, %Y", "%Y.%m.%d", "%d.%m.%Y"]
_TS_AUTO = ["%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M", "%Y/%m/%d %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d", "%Y%m%d %H:%M:%S", "%Y%m%d%H%M%S"]
_FORMAT_MAP = [("YYYY", "%Y"), ("YY", "%y"), ("MM", "%m"), ("MON", "%b"), ("DD", "%d"), ("HH24", "%H"), ("HH12", "%I"),
               ("HH", "%H"), ("MI", "%M"), ("SS", "%S"), ("AM", "%p"), ("PM", "%p"), ("US", "%f"), ("MS", "%f")]


def _strptime_format(fmt: str) -> str:
    out = fmt
    for a, b in _FORMAT_MAP:
        out = out.replace(a, b)
    return out


class LoadError(Exception):
    def __init__(self, code: int, reason: str, col: dict | None = None, value: str | None = None):
        super().__init__(reason)
        self.code, self.reason, self.col, self.value = code, reason, col, value


class Loader:
    """Parses S3 objects into PostgreSQL COPY text, collecting Redshift-style per-line load errors."""

    def __init__(self, columns: list[dict], options: Options, table: str):
        self.columns, self.o, self.table = columns, options, table
        self.errors: list[tuple] = []
        self.rows = 0
        self.out = io.StringIO()
        self.maxerror = int(options.get("maxerror", 0))
        df, tf = options.get("dateformat"), options.get("timeformat")
        self.datefmts = _DATE_AUTO if df in (None, "auto") else [_strptime_format(df)]
        self.tsfmts = _TS_AUTO if tf in (None, "auto") else (None if str(tf).lower().startswith("epoch") else [_strptime_format(tf)])
        self.epoch = str(tf).lower() if tf and str(tf).lower().startswith("epoch") else None

    # value checks -------------------------------------------------------------------------------
    def convert(self, col: dict, raw: str | None, from_json: bool = False) -> str | None:
        o = self.o
        typ = col["type"]
        if raw is None:
            value = None
        else:
            value = raw
            if "\udc80" <= max(value, default="\0") and any("\udc80" <= ch <= "\udcff" for ch in value):
                if "acceptinvchars" in o:
                    value = re.sub("[\udc80-\udcff]", str(o.get("acceptinvchars"))[:1] or "?", value)
                else:
                    bad = next(ch for ch in value if "\udc80" <= ch <= "\udcff")
                    raise LoadError(1220, f"String contains invalid or unsupported UTF8 codepoints. Bad UTF8 hex sequence: {ord(bad) - 0xdc00:02x} (error 3)", col, raw)
            if not from_json and "null" in o and value == o.get("null"):
                value = None
            elif col["char"]:
                if value == "" and "emptyasnull" in o:
                    value = None
                elif value.strip() == "" and "blanksasnull" in o:
                    value = None
                elif "trimblanks" in o:
                    value = value.rstrip()
            elif not from_json and value.strip() == "" and typ != "jsonb":
                value = None
            elif not from_json and value == "\\N" and "null" not in o:
                value = None
        if value is None:
            if col["notnull"] and not col["has_default"]:
                raise LoadError(1213, "Missing data for not-null field", col, "")
            return None
        if col["char"]:
            limit = col["length"]
            if limit and len(value.encode()) > limit:
                if "truncatecolumns" in o:
                    b = value.encode()[:limit]
                    value = b.decode("utf-8", "ignore")
                else:
                    raise LoadError(1204, "String length exceeds DDL length", col, value)
            return value
        if typ in _INT_RANGE:
            if not _INT_RE.match(value):
                pos = next((i for i, ch in enumerate(value) if not (ch.isdigit() or ch in "+- ")), 0)
                raise LoadError(1207, f"Invalid digit, Value '{value[pos:pos + 1]}', Pos {pos}, Type: Integer", col, value)
            n = int(value)
            lo, hi = _INT_RANGE[typ]
            if not lo <= n <= hi:
                raise LoadError(1216, f"Overflow, Value '{value.strip()}', Type: Integer", col, value)
            return str(n)
        if typ == "numeric":
            try:
                d = decimal.Decimal(value.strip())
                if not d.is_finite():
                    raise decimal.InvalidOperation
            except decimal.InvalidOperation:
                raise LoadError(1207, f"Invalid digit, Value '{value}', Pos 0, Type: Decimal", col, value)
            p, s = col["precision"], col["scale"]
            if p:
                q = d.quantize(decimal.Decimal(1).scaleb(-s), rounding=decimal.ROUND_HALF_UP if "roundec" in o else decimal.ROUND_DOWN)
                if len(q.as_tuple().digits) - (-q.as_tuple().exponent if q.as_tuple().exponent < 0 else 0) > p - s and q != 0:
                    raise LoadError(1216, f"Numeric data overflow (result precision), Value '{value}', Type: Decimal({p},{s})", col, value)
                return str(q)
            return str(d)
        if typ in ("float4", "float8"):
            try:
                float(value)
            except ValueError:
                raise LoadError(1208, f"Invalid float value, Value '{value}'", col, value)
            return value.strip()
        if typ == "bool":
            b = _BOOL.get(value.strip().lower())
            if b is None:
                raise LoadError(1210, f"Invalid boolean value, Value '{value}'", col, value)
            return b
        if typ == "date":
            v = value.strip()
            for f in self.datefmts:
                try:
                    return dt.datetime.strptime(v, f).date().isoformat()
                except ValueError:
                    continue
            if "acceptanydate" in o:
                return None
            raise LoadError(1205, "Invalid Date Format - length must be 10 or more" if len(v) < 10 else "Invalid date format", col, value)
        if typ in ("timestamp", "timestamptz"):
            v = value.strip()
            if self.epoch:
                try:
                    n = float(v)
                except ValueError:
                    raise LoadError(1206, f"Invalid timestamp format or value [{self.o.get('timeformat')}]", col, value)
                secs = n / 1000 if self.epoch == "epochmillisecs" else n
                return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=secs)).isoformat(sep=" ")
            tz = ""
            m = re.match(r"^(.*?)(Z|[+-]\d\d(?::?\d\d)?)$", v) if len(v) > 10 else None
            if m and ("T" in v or " " in v):
                v, tz = m.group(1), m.group(2)
            for f in self.tsfmts:
                try:
                    t = dt.datetime.strptime(v, f)
                    return t.isoformat(sep=" ") + (("+00" if tz == "Z" else tz) if typ == "timestamptz" else "")
                except ValueError:
                    continue
            raise LoadError(1206, "Invalid timestamp format or value [YYYY-MM-DD HH24:MI:SS]", col, value)
        if typ == "jsonb":
            if from_json:
                return value
            try:
                json.loads(value)
            except ValueError:
                raise LoadError(1224, "Invalid JSON: the input is not a well-formed JSON value for the SUPER column", col, value)
            return value
        if typ == "bytea":
            v = value.strip()
            if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", v):
                raise LoadError(1219, "UTF-8 hexadecimal contains an invalid digit.", col, value)
            if col["length"] and len(v) // 2 > col["length"]:
                raise LoadError(1204, "Value exceeds the maximum length of the VARBYTE column", col, value)
            return "\\x" + v
        return value

    # records ------------------------------------------------------------------------------------
    def add(self, values: list[str | None], filename: str, line: int, raw_line: str, from_json: bool = False) -> None:
        cols = self.columns
        try:
            if len(values) > len(cols):
                raise LoadError(1202, "Extra column(s) found")
            if len(values) < len(cols):
                if "fillrecord" in self.o or from_json:
                    values = list(values) + [None] * (len(cols) - len(values))
                else:
                    raise LoadError(1214, "Delimiter not found", cols[len(values)])
            out = [self.convert(c, v, from_json) for c, v in zip(cols, values)]
        except LoadError as e:
            self.error(e, filename, line, raw_line)
            return
        self.rows += 1
        w = self.out.write
        w("\t".join("\\N" if v is None else v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
                    for v in out))
        w("\n")

    def error(self, e: LoadError, filename: str, line: int, raw_line: str) -> None:
        col = e.col or {}

        def clean(s: str) -> str:
            return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        self.errors.append((filename, line, col.get("name", ""), col.get("typname", ""),
                            str(col.get("length") or "") if col else "", 0, clean(raw_line[:1024]),
                            clean((e.value or "")[:1024]), e.code, clean(e.reason[:100])))

    def load_text(self, text: str, filename: str) -> None:
        o = self.o
        fmt = o.get("format")
        skip = int(o.get("ignoreheader", 0))
        if fmt == "csv":
            delim = str(o.get("delimiter", ","))
            quote = str(o.get("quote", '"'))
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar=quote, strict=True)
            lines = text.splitlines()  # once: the raw text of a record is cut from it (per record would be quadratic)
            last = 0
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    self.error(LoadError(1214, f"Invalid quote formatting for CSV: {e}"), filename, reader.line_num, "")
                    break
                line = reader.line_num
                if line <= skip:
                    last = line
                    continue
                if not rec and "ignoreblanklines" in o:
                    last = line
                    continue
                raw = "\n".join(lines[last:line])[:1024] if len(self.errors) <= self.maxerror + 1 else ""
                last = line
                self.add(rec if rec else [""], filename, line, raw)
            return
        delim = str(o.get("delimiter", "|"))
        escape = "escape" in o
        total = text.count("\n") + 1
        for n, line in enumerate(text.split("\n"), 1):
            if n <= skip:
                continue
            if line.endswith("\r"):
                line = line[:-1]
            if line == "" and (n == total or "ignoreblanklines" in o):
                continue
            if escape:
                fields, cur, i = [], [], 0
                while i < len(line):
                    ch = line[i]
                    if ch == "\\" and i + 1 < len(line):
                        cur.append(line[i + 1])
                        i += 2
                        continue
                    if ch == delim:
                        fields.append("".join(cur))
                        cur = []
                    else:
                        cur.append(ch)
                    i += 1
                fields.append("".join(cur))
            else:
                fields = line.split(delim)
            if "removequotes" in o:
                fields = [f[1:-1] if len(f) >= 2 and f[0] == f[-1] == '"' else f for f in fields]
            self.add(fields, filename, n, line)

    def load_json(self, text: str, filename: str, paths: list[str] | None) -> None:
        ignorecase = str(self.o.get("json", "auto")).lower() == "auto ignorecase"
        dec = json.JSONDecoder()
        pos, n = 0, len(text)
        names = [c["name"] for c in self.columns]
        # Line numbers counted incrementally (counting from the file's start per record is quadratic).
        line, counted = 1, 0
        while True:
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            start = pos
            try:
                obj, pos = dec.raw_decode(text, pos)
            except ValueError as e:
                line += text.count("\n", counted, start)
                self.error(LoadError(1224, f"Invalid JSONPath format or malformed JSON: {e.msg}"), filename, line, text[start:start + 1024])
                break
            line += text.count("\n", counted, pos)
            counted = pos
            raw = text[start:pos]
            if not isinstance(obj, dict):
                self.error(LoadError(1224, "Invalid JSON object: the top level must be an object"), filename, line, raw)
                continue
            if paths is not None:
                vals = [_json_path(obj, p) for p in paths]
            else:
                src = {k.lower(): v for k, v in obj.items()} if ignorecase else obj
                vals = [src.get(name, _MISSING) for name in names]
            self.add([_json_value(v, c) for v, c in zip(vals, self.columns)], filename, line, raw, from_json=True)


_MISSING = object()


def _json_value(v, col: dict) -> str | None:
    if v is _MISSING or v is None:
        return None
    if col["type"] == "jsonb":
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return str(v)


def _json_path(obj, path: str):
    p = path.strip()
    if not p.startswith("$"):
        return _MISSING
    cur = obj
    for m in re.finditer(r"\.([A-Za-z_][\w]*)|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[(\d+)\]", p[1:]):
        key = m.group(1) or m.group(2) or m.group(3)
        if key is not None:
            if not isinstance(cur, dict) or key not in cur:
                return _MISSING
            cur = cur[key]
        else:
            i = int(m.group(4))
            if not isinstance(cur, list) or i >= len(cur):
                return _MISSING
            cur = cur[i]
    return cur


def _decompress(data: bytes, o: Options, url: str) -> bytes:
    try:
        if "gzip" in o:
            return gzip.decompress(data)
        if "zstd" in o:
            return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        if "bzip2" in o:
            return bz2.decompress(data)
        if "lzop" in o:
            raise Refusal("0A000", "LZOP is not supported by dev-redshift")
    except Refusal:
        raise
    except Exception as e:
        raise Refusal("XX000", f"Failed to decompress file '{url}': {type(e).__name__}: {e}")
    return data


def _s3_get(client, url: str) -> bytes | None:
    bucket, key = split_url(url)
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
            return None
        raise Refusal("XX000", f"S3ServiceException:{e.response.get('Error', {}).get('Message', str(e))},Status "
                               f"{e.response.get('ResponseMetadata', {}).get('HTTPStatusCode', '')},Error {e.response.get('Error', {}).get('Code', '')}")


def _list_files(client, o: Options, source: str) -> list[str]:
    if "manifest" in o:
        data = _s3_get(client, source)
        if data is None:
            raise Refusal("XX000", f"Problem reading manifest file - S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey,Key {split_url(source)[1]}")
        try:
            manifest = json.loads(data)
            entries = manifest["entries"]
            assert isinstance(entries, list)
        except Exception:
            raise Refusal("XX000", "Manifest file is not in correct json format")
        files = []
        for e in entries:
            url = e.get("url") if isinstance(e, dict) else None
            if not isinstance(url, str):
                raise Refusal("XX000", "Manifest file is not in correct json format")
            bucket, key = split_url(url)
            if not key or key.endswith("/"):
                raise Refusal("XX000", "COPY with MANIFEST parameter requires full path of an S3 object", "load error 8001")
            try:
                client.head_object(Bucket=bucket, Key=key)
                files.append(url)
            except ClientError:
                if e.get("mandatory"):
                    raise Refusal("XX000", f"Manifest file entry '{url}' is mandatory, but the object does not exist",
                                  "S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey")
        if not files:
            raise Refusal("XX000", "No files to load: none of the manifest's entries exists")
        return files
    bucket, prefix = split_url(source)
    files = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    files.append(f"s3://{bucket}/{obj['Key']}")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise Refusal("XX000", f"S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,Bucket {bucket}")
        raise
    if not files:
        raise Refusal("XX000", f"The specified S3 prefix '{prefix}' does not exist", f"Bucket {bucket}")
    return sorted(files)


def prepare_load(s3: S3, o: Options, source: str, columns: list[dict], table: str) -> Loader:
    client = s3.client(o.get("access_key_id"), o.get("secret_access_key"), o.get("session_token"), o.get("region"))
    fmt = o.get("format")
    if fmt in ("parquet", "orc", "avro", "fixedwidth", "shapefile"):
        raise Refusal("0A000", f"COPY FORMAT {fmt.upper()} is not supported by dev-redshift")
    if fmt == "json":
        # Redshift loads VARBYTE from CSV (hex), Parquet and ORC only ("Loading a column of the VARBYTE data type").
        binary = [c["name"] for c in columns if c["type"] == "bytea"]
        if binary:
            raise Refusal("0A000", f"COPY from JSON cannot load VARBYTE column \"{binary[0]}\": load VARBYTE from CSV, Parquet or ORC")
    files = _list_files(client, o, source)
    loader = Loader(columns, o, table)
    paths = None
    if fmt == "json":
        spec = str(o.get("json", "auto"))
        if spec.lower() not in ("auto", "auto ignorecase"):
            data = _s3_get(client, spec)
            if data is None:
                raise Refusal("XX000", f"Invalid JSONPath file: S3ServiceException:The specified key does not exist. ({spec})")
            try:
                paths = json.loads(data)["jsonpaths"]
            except Exception:
                raise Refusal("XX000", "Invalid JSONPath format: the jsonpaths file must be {\"jsonpaths\": [...]}")
            if len(paths) != len(columns):
                raise Refusal("XX000", f"Number of jsonpaths and the number of columns should match. JSONPath size: {len(paths)}, Number of columns in table or column list: {len(columns)}")
    for url in files:
        data = _s3_get(client, url)
        if data is None:
            continue
        text = _decompress(data, o, url).decode("utf-8", "surrogateescape")
        if fmt == "json":
            loader.load_json(text, url, paths)
        else:
            loader.load_text(text, url)
        if len(loader.errors) > loader.maxerror:
            break
    return loader


_COLUMNS_SQL = """SELECT a.attname, t.typname, a.atttypmod, a.attnotnull, (a.atthasdef OR a.attidentity <> '') AS has_default,
 (SELECT substring(c.conname FROM '^_rsvb_([0-9]+)_') FROM pg_constraint c WHERE c.conrelid = a.attrelid AND a.attnum = ANY (c.conkey)
   AND c.conname LIKE '\\_rsvb\\_%%' LIMIT 1), a.attrelid::int, (SELECT relname FROM pg_class WHERE oid = a.attrelid)
 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


async def run_copy(session, sql: str, out: list[bytes]) -> bool:
    """COPY t [(cols)] FROM 's3://…' authorization options — runs in the client's backend session."""
    from server import message, cstr, notice, build_error  # noqa: circular at import time only
    query_id = session.new_query_id()
    start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    try:
        sig = _sig_tokens(sql)
        k = 1
        name_toks = []
        while k < len(sig) and sig[k].text != "(" and sig[k].low != "from":
            name_toks.append(sig[k])
            k += 1
        table_sql = "".join(('"' + _name(t).replace('"', '""') + '"') if t.kind in ("word", "qident") else t.text for t in name_toks)
        want: list[str] | None = None
        if sig[k].text == "(":
            want = []
            k += 1
            while sig[k].text != ")":
                if sig[k].text != ",":
                    want.append(_name(sig[k]))
                k += 1
            k += 1
        if sig[k].low != "from":
            raise syntax_error(sig[k].text)
        source = _unquote(sig[k + 1])
        o = parse_auth_and_options(sig, k + 2, "COPY")
    except Refusal as r:
        await session.raise_in_backend(err(r.sqlstate, r.message, r.detail), out)
        return False
    cols, rows, e = await session.run_collect(_COLUMNS_SQL % _lit(table_sql))
    if e is not None:
        out.append(build_error(e))
        return False
    columns = []
    relid, relname = 0, table_sql
    for name, typname, mod, notnull, has_default, vb, rid, rname in rows:
        name, typname = name.decode(), typname.decode()
        mod = int(mod)
        relid, relname = int(rid), rname.decode()
        c = {"name": name, "typname": typname, "type": typname, "notnull": notnull == b"t", "has_default": has_default == b"t",
             "char": typname in ("varchar", "bpchar", "text"), "length": None, "precision": None, "scale": 0}
        if c["char"] and mod > 4:
            c["length"] = mod - 4
        if typname == "numeric" and mod > 4:
            c["precision"], c["scale"] = ((mod - 4) >> 16) & 0xFFFF, (mod - 4) & 0xFFFF
        if typname == "bytea" and vb:
            c["length"] = int(vb)
        columns.append(c)
    by_name = {c["name"]: c for c in columns}
    if want is not None:
        missing = [w for w in want if w not in by_name]
        if missing:
            await session.raise_in_backend(err("42703", f'column "{missing[0]}" of relation "{relname}" does not exist'), out)
            return False
        columns = [by_name[w] for w in want]
    try:
        loader = await asyncio.to_thread(prepare_load, session.server.s3, o, source, columns, relname)
    except Refusal as r:
        await session.raise_in_backend(err(r.sqlstate, r.message, r.detail), out)
        return False
    except Exception as ex:  # S3 unreachable and the like
        await session.raise_in_backend(err("XX000", f"S3ServiceException:{type(ex).__name__}: {ex}"), out)
        return False
    if loader.errors:
        records = [(0, relid, start, session.pid, query_id) + e + (0, session.database) for e in loader.errors]
        records = [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15], r[16])
                   for r in records]
        await asyncio.to_thread(session.server.admin.record_load_errors, session.database, records)
    if len(loader.errors) > loader.maxerror:
        await session.raise_in_backend(err("XX000", f"Load into table '{relname}' failed.  Check 'stl_load_errors' system table for details."), out)
        return False
    # Load the good rows through COPY FROM STDIN on the client's own backend session (same transaction).
    if "noload" not in o and loader.rows:
        col_list = ", ".join(_quote_ident(c["name"]) for c in columns)
        session.send_backend(message(b"Q", cstr(f"COPY {table_sql} ({col_list}) FROM STDIN")))
        await session.bwriter.drain()
        started = False
        failed = None
        while True:
            kind, payload = await session.next_internal()
            if kind == 71 and not started:  # 'G' CopyInResponse
                started = True
                data = loader.out.getvalue().encode("utf-8", "surrogateescape")
                for i in range(0, len(data), 1 << 20):
                    session.send_backend(message(b"d", data[i:i + (1 << 20)]))
                    await session.bwriter.drain()
                session.send_backend(message(b"c", b""))
                await session.bwriter.drain()
            elif kind == 69:
                failed = session.map_error(_error_fields(payload))
            elif kind == 90:
                break
        if failed is not None:
            out.append(build_error(failed))
            return False
    out.append(notice(f"Load into table '{relname}' completed, {loader.rows} record(s) loaded successfully."))
    if loader.errors:
        out.append(notice(f"Load into table '{relname}' completed, {len(loader.errors)} record(s) could not be loaded.  "
                          "Check 'stl_load_errors' system table for details."))
    out.append(message(b"C", cstr("COPY")))
    return True


def _error_fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


# ------------------------------------------------------------------------------------------------ UNLOAD
def _unload_query(sql: str) -> tuple[str, str]:
    """UNLOAD ('select …') TO 's3://…' … → (query text, rest after the closing parenthesis)."""
    m = re.match(r"\s*unload\s*\(\s*'", sql, re.IGNORECASE)
    if not m:
        raise syntax_error("UNLOAD")
    i = m.end()
    buf = []
    while i < len(sql):
        ch = sql[i]
        if ch == "\\" and i + 1 < len(sql):
            buf.append(sql[i + 1])
            i += 2
            continue
        if ch == "'":
            if i + 1 < len(sql) and sql[i + 1] == "'":
                buf.append("'")
                i += 2
                continue
            break
        buf.append(ch)
        i += 1
    rest = sql[i + 1:].lstrip()
    if not rest.startswith(")"):
        raise syntax_error(rest[:10] or "end of input")
    return "".join(buf), rest[1:]


def _outer_limit(query: str) -> bool:
    depth = 0
    for t in tokenize(query):
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.kind == "word" and t.low == "limit":
            return True
    return False


_NUMERIC_OIDS = {20, 21, 23, 700, 701, 1700, 26}
_TYPE_NAMES = {16: "boolean", 20: "bigint", 21: "smallint", 23: "integer", 25: "character varying", 700: "real",
               701: "double precision", 1043: "character varying", 1042: "character", 1082: "date", 1114: "timestamp without time zone",
               1184: "timestamp with time zone", 1700: "numeric", 3802: "super", 17: "varbyte", 1083: "time without time zone"}


def _schema_element(name: str, oid: int, mod: int) -> dict:
    t: dict = {"base": _TYPE_NAMES.get(oid, "character varying")}
    if oid in (1043, 1042) and mod > 4:
        t["max_length"] = mod - 4
    if oid == 1700 and mod > 4:
        t["precision"], t["scale"] = ((mod - 4) >> 16) & 0xFFFF, (mod - 4) & 0xFFFF
    return {"name": name, "type": t}


def _format_rows(cols, rows, o: Options) -> tuple[list[bytes], str]:
    fmt = o.get("format") or "text"
    if fmt == "json":
        lines = []
        names = [c[0] for c in cols]
        for r in rows:
            obj = {}
            for (name, oid, _), v in zip(cols, r):
                if v is None:
                    obj[name] = None
                    continue
                s = v.decode()
                if oid == 3802:
                    obj[name] = json.loads(s)
                elif oid == 17:
                    obj[name] = s[2:] if s.startswith("\\x") else s
                elif oid in _NUMERIC_OIDS:
                    obj[name] = json.loads(s) if oid != 1700 else decimal.Decimal(s)
                else:
                    obj[name] = s
            lines.append(_dump_json(obj).encode() + b"\n")
        _ = names
        return lines, fmt
    csv_mode = fmt == "csv"
    delim = str(o.get("delimiter", "," if csv_mode else "|"))
    null = str(o.get("null", ""))
    addquotes, escape = "addquotes" in o, "escape" in o

    def field(v: bytes | None, oid: int) -> str:
        if v is None:
            return null
        s = v.decode()
        if oid == 3802:
            s = re.sub(r'("(?:[^"\\]|\\.)*")|\s+', lambda m: m.group(1) or "", s)
        elif oid == 17 and s.startswith("\\x"):
            s = s[2:]
        if csv_mode:
            if any(ch in s for ch in (delim, '"', "\n", "\r")):
                return '"' + s.replace('"', '""') + '"'
            return s
        if escape and oid in (25, 1043, 1042, 3802):
            s = s.replace("\\", "\\\\").replace("\n", "\\\n").replace("\r", "\\\r").replace(delim, "\\" + delim)
            if addquotes:
                s = s.replace('"', '\\"').replace("'", "\\'")
        if addquotes:
            return '"' + s + '"'
        return s

    lines = [(delim.join(field(v, c[1]) for v, c in zip(r, cols)) + "\n").encode() for r in rows]
    return lines, fmt


class _DecimalEncoder(json.JSONEncoder):
    pass


def _dump_json(obj) -> str:
    # Decimals as exact JSON numbers.
    parts = []
    for k, v in obj.items():
        if isinstance(v, decimal.Decimal):
            parts.append(json.dumps(k) + ":" + str(v))
        else:
            parts.append(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"), ensure_ascii=False))
    return "{" + ",".join(parts) + "}"


def write_unload(s3: S3, o: Options, target: str, cols, rows, slices: int) -> tuple[int, list[str]]:
    client = s3.client(o.get("access_key_id"), o.get("secret_access_key"), o.get("session_token"), o.get("region"))
    bucket, prefix = split_url(target)
    existing = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            existing += [x["Key"] for x in page.get("Contents", [])]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise Refusal("XX000", f"S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,Bucket {bucket}")
        raise
    if existing:
        if "cleanpath" in o:
            for i in range(0, len(existing), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in existing[i:i + 1000]]})
        elif "allowoverwrite" not in o:
            raise Refusal("XX000", NOT_EMPTY)
    lines, fmt = _format_rows(cols, rows, o)
    header = None
    if "header" in o and fmt != "json":
        delim = str(o.get("delimiter", "," if fmt == "csv" else "|"))
        header = (delim.join(c[0] for c in cols) + "\n").encode()
    comp = "gzip" if "gzip" in o else "zstd" if "zstd" in o else "bzip2" if "bzip2" in o else None
    ext = o.get("extension")
    suffix = ("." + str(ext).lstrip(".")) if ext else {"gzip": ".gz", "zstd": ".zst", "bzip2": ".bz2", None: ""}[comp]
    maxsize = int(o.get("maxfilesize", int(6.2 * 1024 ** 3)))
    parallel = o.get("parallel", True)
    groups: list[list[bytes]] = [[] for _ in range(slices)] if parallel else [[]]
    for i, line in enumerate(lines):
        groups[i % len(groups)].append(line)
    files: list[tuple[str, bytes, int]] = []
    for g, glines in enumerate(groups):
        if not glines and (lines or fmt == "json" or g > 0):
            continue
        part, cur, size = 0, [], 0
        chunks = []
        for line in glines:
            if cur and size + len(line) > maxsize:
                chunks.append(cur)
                cur, size = [], 0
            cur.append(line)
            size += len(line)
        chunks.append(cur)
        for cur in chunks:
            body = (header or b"") + b"".join(cur)
            count = len(cur) + (1 if header else 0)
            name = f"{prefix}{g:04d}_part_{part:02d}" if parallel else f"{prefix}{part:03d}"
            files.append((name + suffix, body, count))
            part += 1
    entries = []
    total_len = total_rows = 0
    for key, body, count in files:
        if comp == "gzip":
            body = gzip.compress(body)
        elif comp == "zstd":
            body = zstandard.ZstdCompressor().compress(body)
        elif comp == "bzip2":
            body = bz2.compress(body)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        entry = {"url": f"s3://{bucket}/{key}", "meta": {"content_length": len(body)}}
        if "verbose" in o:
            entry["meta"]["record_count"] = count
        entries.append(entry)
        total_len += len(body)
        total_rows += count
    if "manifest" in o:
        manifest: dict = {"entries": entries}
        if "verbose" in o:
            manifest["schema"] = {"elements": [_schema_element(n, oid, mod) for n, oid, mod in cols]}
            manifest["meta"] = {"content_length": total_len, "record_count": total_rows}
            manifest["author"] = {"name": "Amazon Redshift", "version": "1.0.0"}
        client.put_object(Bucket=bucket, Key=f"{prefix}manifest", Body=json.dumps(manifest, indent=2).encode())
    return len(rows), [f"s3://{bucket}/{k}" for k, _, _ in files]


async def run_unload(session, sql: str, out: list[bytes]) -> bool:
    from server import message, cstr, notice, build_error  # noqa
    try:
        query, rest = _unload_query(sql)
        sig = _sig_tokens(rest)
        if not sig or sig[0].low != "to":
            raise syntax_error(sig[0].text if sig else "end of input")
        target = _unquote(sig[1])
        o = parse_auth_and_options(sig, 2, "UNLOAD")
        fmt = o.get("format")
        if fmt == "parquet":
            raise Refusal("0A000", "UNLOAD FORMAT PARQUET is not supported by dev-redshift")
        if fmt == "json" and any(x in o for x in ("delimiter", "header", "fixedwidth", "addquotes", "escape", "null")):
            raise Refusal("XX000", "JSON format can't be used with DELIMITER, HEADER, FIXEDWIDTH, ADDQUOTES, ESCAPE, or NULL AS")
        if fmt == "csv" and "addquotes" in o:
            raise Refusal("XX000", "CSV format can't be used with FIXEDWIDTH or ADDQUOTES")
        if "cleanpath" in o and "allowoverwrite" in o:
            raise Refusal("XX000", "CLEANPATH and ALLOWOVERWRITE can't be used together")
        if "maxfilesize" in o and not 5 * 1024 ** 2 <= int(o.get("maxfilesize")) <= int(6.2 * 1024 ** 3):
            raise Refusal("XX000", "MAXFILESIZE must be between 5 MB and 6.2 GB")
        if _outer_limit(query):
            raise Refusal("0A000", "Limit clause is not supported in the outer SELECT of an UNLOAD",
                          "Use a nested LIMIT, or CREATE TABLE AS with LIMIT and unload that table.")
        translated = session.server.translator.translate(query).sql
    except Refusal as r:
        await session.raise_in_backend(err(r.sqlstate, r.message, r.detail), out)
        return False
    cols, rows, e = await session.run_collect(translated)
    if e is not None:
        out.append(build_error(e))
        return False
    try:
        count, _ = await asyncio.to_thread(write_unload, session.server.s3, o, target, cols, rows, session.server.args.slices)
    except Refusal as r:
        await session.raise_in_backend(err(r.sqlstate, r.message, r.detail), out)
        return False
    except Exception as ex:
        await session.raise_in_backend(err("XX000", f"S3ServiceException:{type(ex).__name__}: {ex}"), out)
        return False
    out.append(notice(f"UNLOAD completed, {count} record(s) unloaded successfully."))
    out.append(message(b"C", cstr("UNLOAD")))
    return True


_ = (struct, Translator)

"""Redshift SQL → PostgreSQL: statement splitting, the accept/refuse/limit rules and the translation.

Token level on purpose: a full grammar (sqlglot's, for one) accepts PostgreSQL-only syntax such as ON CONFLICT or
RETURNING and rewrites statements freely; here every rule is explicit, a statement that needs no rule passes
through byte for byte, and a large multi-row INSERT costs one regular-expression scan.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

MAX_STATEMENT_BYTES = 16 * 1024 * 1024
MAX_PARAMS = 32767
MAX_VARCHAR = 65535
MAX_CHAR = 4096
MAX_DECIMAL_PRECISION = 38
VARBYTE_DEFAULT = 64000
VARBYTE_MAX = 1024000
SCHEMA = "_dev_redshift"
REFUSAL_MARK = "_dev_redshift_refused_"


class Refusal(Exception):
    """A statement Redshift refuses: SQLSTATE, message (and optional detail), as Redshift words it."""

    def __init__(self, sqlstate: str, message: str, detail: str | None = None):
        super().__init__(message)
        self.sqlstate, self.message, self.detail = sqlstate, message, detail


def syntax_error(near: str) -> Refusal:
    return Refusal("42601", f'syntax error at or near "{near}"')


# ------------------------------------------------------------------------------------------------ lexing
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<str>[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>(?:[A-Za-z_][A-Za-z_0-9]*)?)\$.*?\$(?P=tag)\$)
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<param>\$\d+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_\u0080-\uffff][A-Za-z_0-9$\u0080-\uffff]*)
  | (?P<hashname>\#[A-Za-z_][A-Za-z_0-9$]*)
  | (?P<op>::|<=|>=|<>|!=|\|\||[-+*/%^<>=~!@&|`?\#])
  | (?P<punct>[(),;\[\].:])
""", re.VERBOSE | re.DOTALL)

_SPLIT = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\$((?:[A-Za-z_][A-Za-z_0-9]*)?)\$.*?\$\1\$|;""", re.DOTALL)


@dataclass
class Tok:
    kind: str
    text: str

    @property
    def low(self) -> str:
        return self.text.lower()


def tokenize(sql: str) -> list[Tok]:
    out: list[Tok] = []
    pos, n = 0, len(sql)
    match = _TOKEN.match
    while pos < n:
        m = match(sql, pos)
        if m is None:  # a character no rule knows: keep it as an operator token
            out.append(Tok("op", sql[pos]))
            pos += 1
            continue
        out.append(Tok(m.lastgroup if m.lastgroup != "tag" else "dollar", m.group()))
        pos = m.end()
    return out


def split_statements(sql: str) -> list[str]:
    """Top-level statements of a query string (strings, quoted names, comments and dollar quotes respected)."""
    if ";" not in sql:
        return [sql] if sql.strip() else []
    parts, start = [], 0
    for m in _SPLIT.finditer(sql):
        if m.group() == ";":
            parts.append(sql[start:m.start()])
            start = m.end()
    parts.append(sql[start:])
    return [p for p in parts if _has_code(p)]


def _has_code(s: str) -> bool:
    return any(t.kind not in ("ws", "comment") for t in tokenize(s)) if s.strip() else False


_FIRST_WORDS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*([A-Za-z_]+)(?:(?:\s+|--[^\n]*|/\*.*?\*/)+([A-Za-z_]+))?", re.DOTALL)


def first_words(sql: str) -> tuple[str, str]:
    m = _FIRST_WORDS.match(sql)
    if not m:
        return "", ""
    return (m.group(1) or "").lower(), (m.group(2) or "").lower()


# Statements that contain none of these words (or characters) need no rule: they pass through unchanged.
_TRIGGER = re.compile(r"""(?ix)
    \b(?:getdate|sysdate|sum|dateadd|datediff|date_part|date_trunc|datepart|nvl|nvl2|json_parse|json_serialize|from_hex|to_hex|from_varbyte|trunc
      |json_extract_path_text|is_valid_json|super|varbyte|varbinary|binary|varchar|character|char|nchar|nvarchar|bpchar|text
      |decimal|numeric|jsonb|json|array|returning|conflict|for|skip|nowait|pg_advisory\w*|pg_try_advisory\w*|stdin|stdout
      |stv_\w+|svv_\w+|stl_\w+|sys_\w+|svl_\w+|pg_table_def|information_schema|lock|truncate|merge|create|alter|drop
      |values|collate|listen|notify|serial|bigserial|smallserial|bytea|uuid|money|inet|cidr|macaddr|xml|tsvector|tsquery
      |interval|notnull|oid|tableoid|xmin|xmax|cmin|cmax|ctid|encode|distkey|sortkey|diststyle|identity|backup|set|copy|unload|vacuum|analyze|prepared|transaction)\b
    |["\[\#]""")

_SYSTEM_VIEWS = {
    "pg_table_def": "pg_table_def", "svv_table_info": "svv_table_info", "svv_columns": "svv_columns",
    "stv_slices": "stv_slices", "svv_transactions": "svv_transactions", "stv_inflight": "stv_inflight",
    "stl_load_errors": "stl_load_errors", "sys_load_error_detail": "sys_load_error_detail",
    "sys_query_history": "sys_query_history", "svv_user_info": "svv_user_info",
}
_INFO_SCHEMA_VIEWS = {"table_constraints": "is_table_constraints", "key_column_usage": "is_key_column_usage",
                      "columns": "is_columns", "tables": "is_tables", "schemata": "is_schemata"}
_FUNC_RENAME = {"nvl": "coalesce", "len": "length", "getdate": f"{SCHEMA}.getdate", "json_parse": f"{SCHEMA}.json_parse",
                "json_serialize": f"{SCHEMA}.json_serialize", "from_hex": f"{SCHEMA}.from_hex", "to_hex": f"{SCHEMA}.to_hex",
                "from_varbyte": f"{SCHEMA}.from_varbyte",
                "trunc": f"{SCHEMA}.trunc", "nvl2": f"{SCHEMA}.nvl2", "is_valid_json": f"{SCHEMA}.is_valid_json",
                "json_extract_path_text": f"{SCHEMA}.json_extract_path_text", "sum": f"{SCHEMA}.sum"}
_DATEPART_FUNCS = {"dateadd": f"{SCHEMA}.dateadd", "datediff": f"{SCHEMA}.datediff", "date_part": "date_part",
                   "datepart": "date_part", "date_trunc": "date_trunc"}
# PostgreSQL types Redshift does not have (page "Unsupported PostgreSQL data types").
_UNSUPPORTED_TYPES = {"jsonb", "json", "bytea", "uuid", "money", "inet", "cidr", "macaddr", "macaddr8", "xml",
                      "tsvector", "tsquery", "serial", "bigserial", "smallserial", "serial4", "serial8", "serial2",
                      "txid_snapshot", "bit", "varbit", "point", "line", "lseg", "box", "path", "polygon", "circle",
                      "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange", "regclass", "oid"}
_SYSTEM_COLUMNS = {"oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"}
_CHAR_TYPES = {"varchar", "nvarchar", "text", "bpchar", "char", "nchar", "character"}


@dataclass
class Translation:
    sql: str                       # what the backend runs
    kind: str                      # first keyword (lower case)
    special: str | None = None     # "copy" / "unload": run by the proxy itself
    truncate: bool = False         # TRUNCATE: commits the open transaction first
    alter_type: bool = False       # ALTER COLUMN TYPE: refused inside a transaction block
    max_param: int = 0


def _sig(tokens: list[Tok]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.kind not in ("ws", "comment")]


class Translator:
    """One per server: translations are cached by statement text (the product re-sends the same shapes)."""

    def __init__(self, cache_size: int = 4096, cache_max_len: int = 65536):
        self.cache: dict[str, Translation | Refusal] = {}
        self.cache_size, self.cache_max_len = cache_size, cache_max_len

    def translate(self, sql: str) -> Translation:
        if len(sql) > MAX_STATEMENT_BYTES // 4 and len(sql.encode()) > MAX_STATEMENT_BYTES:
            size = len(sql.encode())
            raise Refusal("54000", f"Statement is too large. Statement Size: {size} bytes. Maximum Allowed: {MAX_STATEMENT_BYTES} bytes")
        cached = self.cache.get(sql)
        if cached is None:
            try:
                cached = self._translate(sql)
            except Refusal as r:
                cached = r
            if len(sql) <= self.cache_max_len:
                if len(self.cache) >= self.cache_size:
                    self.cache.clear()
                self.cache[sql] = cached
        if isinstance(cached, Refusal):
            raise cached
        return cached

    # ------------------------------------------------------------------------------------------
    def _translate(self, sql: str) -> Translation:
        kind, second = first_words(sql)
        if kind in ("copy", "unload"):
            return self._copy_unload(sql, kind)
        if not _TRIGGER.search(sql):
            return Translation(sql, kind, max_param=_max_param(sql))
        toks = tokenize(sql)
        t = Translation("", kind)
        self._check_common(toks, kind)
        if kind == "merge":
            toks = self._merge(toks)
        elif kind == "create" and self._creates_table(toks):
            toks = self._create_table(toks)
        elif kind == "create":
            self._check_create_other(toks)
        elif kind == "alter" and second == "table":
            toks, t.alter_type = self._alter_table(toks)
        elif kind == "truncate":
            t.truncate = True
        elif kind in ("listen", "notify", "unlisten"):
            raise syntax_error(toks[_sig(toks)[0]].text)
        elif kind == "prepare" and second == "transaction":
            raise syntax_error(toks[_sig(toks)[1]].text)  # no two-phase commit in Redshift (dev-redshift wording)
        elif kind in ("commit", "rollback") and second == "prepared":
            raise syntax_error(toks[_sig(toks)[1]].text)
        elif kind == "values":
            raise Refusal("0A000", "VALUES list used as a constant table is not supported")
        elif kind == "set":
            toks = self._set(toks)
        toks = _rewrite_nvl2(toks)
        toks = _rewrite_cast_super(toks)
        toks = self._rewrite_expressions(toks)
        t.sql = "".join(x.text for x in toks)
        t.max_param = max((int(x.text[1:]) for x in toks if x.kind == "param"), default=0)
        return t

    # ------------------------------------------------------------------------------------------ refusals
    def _check_common(self, toks: list[Tok], kind: str) -> None:
        sig = _sig(toks)
        words = [toks[i].low if toks[i].kind == "word" else None for i in sig]
        for j, i in enumerate(sig):
            tok = toks[i]
            w = words[j]
            nxt = words[j + 1] if j + 1 < len(sig) else None
            prev = toks[sig[j - 1]] if j > 0 else None
            if w == "returning" and kind in ("insert", "update", "delete", "merge", "with"):
                raise syntax_error(tok.text)
            if w == "on" and nxt == "conflict" and kind in ("insert", "with"):
                raise syntax_error(tok.text)
            if w == "for" and nxt in ("update", "share", "no", "key") and kind in ("select", "with", "("):
                raise syntax_error(tok.text)
            if w in ("skip", "nowait") and j > 0 and words[j - 1] in ("update", "share", "locked"):
                raise syntax_error(tok.text)
            if w and (w.startswith("pg_advisory") or w.startswith("pg_try_advisory")) and nxt is None and j + 1 < len(sig) \
                    or w and (w.startswith("pg_advisory") or w.startswith("pg_try_advisory")) and j + 1 < len(sig) and toks[sig[j + 1]].text == "(":
                raise Refusal("42883", f"function {w} does not exist",
                              detail="Advisory locks are a PostgreSQL feature Amazon Redshift does not have.")
            if w == "array" and j + 1 < len(sig) and toks[sig[j + 1]].text == "[":
                raise syntax_error("[")
            if tok.text == "[" and prev is not None and (prev.kind == "word" and prev.low in _TYPE_WORDS or prev.text == ")"
                                                     and _type_before_paren(toks, sig, j - 1)):
                raise syntax_error("[")
            if w in ("jsonb", "json", "bytea", "uuid", "money", "inet", "cidr", "macaddr", "xml", "tsvector", "tsquery",
                     "serial", "bigserial", "smallserial", "txid_snapshot", "regclass") and prev is not None \
                    and (prev.text == "::" or (prev.kind == "word" and prev.low == "as" and _inside_cast(toks, sig, j))):
                raise Refusal("42704", f'type "{w}" does not exist')
            if w == "values" and prev is not None and prev.text == "(":
                raise Refusal("0A000", "VALUES list used as a constant table is not supported")
            if w == "collate":
                raise Refusal("0A000", "COLLATE is not supported", detail="Amazon Redshift has no user-defined collations.")
            if tok.kind == "qident":
                toks[i] = Tok("qident", tok.text.lower())  # enable_case_sensitive_identifier off: "Name" is name
            elif tok.kind == "hashname":  # #name: a temporary table
                toks[i] = Tok("qident", '"' + tok.text.lower() + '"')

    def _check_create_other(self, toks: list[Tok]) -> None:
        sig = _sig(toks)
        words = [toks[i].low for i in sig[:6]]
        for w in words[1:4]:
            if w in ("index", "sequence", "trigger", "tablespace", "rule", "type", "domain", "extension", "publication",
                     "subscription", "collation", "foreign", "server", "event", "policy", "statistics", "operator"):
                if w == "index" or (w == "unique" and "index" in words):
                    raise Refusal("0A000", "CREATE INDEX is not supported", detail="Amazon Redshift has no indexes: use sort keys.")
                raise Refusal("0A000", f"CREATE {w.upper()} is not supported")
            if w == "unique" and "index" in words:
                raise Refusal("0A000", "CREATE INDEX is not supported", detail="Amazon Redshift has no indexes: use sort keys.")

    # ------------------------------------------------------------------------------------------ expressions
    def _rewrite_expressions(self, toks: list[Tok]) -> list[Tok]:
        sig = _sig(toks)
        out = list(toks)
        for j, i in enumerate(sig):
            tok = toks[i]
            if tok.kind != "word":
                continue
            w = tok.low
            nxt = toks[sig[j + 1]] if j + 1 < len(sig) else None
            prev = toks[sig[j - 1]] if j > 0 else None
            prev_dot = prev is not None and prev.text == "."
            if prev_dot:
                # pg_catalog.pg_table_def / information_schema.table_constraints
                qual = toks[sig[j - 2]].low if j > 1 else ""
                if qual == "information_schema" and w in _INFO_SCHEMA_VIEWS:
                    out[sig[j - 2]] = Tok("word", SCHEMA)
                    out[i] = Tok("word", _INFO_SCHEMA_VIEWS[w])
                elif qual == "pg_catalog" and w in _SYSTEM_VIEWS:
                    out[sig[j - 2]] = Tok("word", SCHEMA)
                continue
            in_cast = prev is not None and (prev.text == "::" or (prev.low == "as" and _inside_cast(toks, sig, j)))
            if nxt is not None and nxt.text == "(" and in_cast and w in ("varbyte", "varbinary"):
                # CAST(x AS VARBYTE(n)): bytea takes no length (the column's CHECK keeps the limit).
                out[i] = Tok("word", "bytea")
                for k in range(sig[j + 1], sig[_matching(toks, sig, j + 1)] + 1):
                    out[k] = Tok("ws", "")
                continue
            if nxt is not None and nxt.text == "(":
                if w in _DATEPART_FUNCS:
                    # DATEADD(second, ...): the date part is a keyword (or a string); PostgreSQL wants text.
                    out[i] = Tok("word", _DATEPART_FUNCS[w])
                    if j + 2 < len(sig):
                        part = toks[sig[j + 2]]
                        if part.kind == "word":
                            out[sig[j + 2]] = Tok("str", "'" + part.low + "'")
                        elif part.kind == "qident":
                            out[sig[j + 2]] = Tok("str", "'" + part.text.strip('"') + "'")
                elif w in _FUNC_RENAME:
                    out[i] = Tok("word", _FUNC_RENAME[w])
                continue
            if w == "notnull" and prev is not None and (prev.text in (",", ".") or prev.low in ("select", "distinct")):
                out[i] = Tok("qident", '"notnull"')  # PG_TABLE_DEF's column; a keyword in PostgreSQL
            elif w == "sysdate":
                out[i] = Tok("word", f"{SCHEMA}.sysdate()")
            elif w in _SYSTEM_VIEWS and (nxt is None or nxt.text != "("):
                out[i] = Tok("word", f"{SCHEMA}.{_SYSTEM_VIEWS[w]}")
            elif prev is not None and prev.text == "::" or (prev is not None and prev.low == "as" and _inside_cast(toks, sig, j)):
                repl = _cast_type(w, toks, sig, j)
                if repl is not None:
                    out[i] = Tok("word", repl)
        return out

    # ------------------------------------------------------------------------------------------ CREATE TABLE
    @staticmethod
    def _creates_table(toks: list[Tok]) -> bool:
        sig = _sig(toks)
        for i in sig[1:5]:
            if toks[i].low == "table":
                return True
            if toks[i].low not in ("temp", "temporary", "local", "global", "unlogged"):
                return False
        return False

    def _create_table(self, toks: list[Tok]) -> list[Tok]:
        sig = _sig(toks)
        j = 1
        temp = False
        while toks[sig[j]].low != "table":
            if toks[sig[j]].low in ("temp", "temporary"):
                temp = True
            if toks[sig[j]].low == "unlogged":
                raise Refusal("0A000", "UNLOGGED tables are not supported")
            j += 1
        j += 1
        if toks[sig[j]].low == "if":
            j += 3
        name_start = j
        while j + 1 < len(sig) and toks[sig[j + 1]].text == ".":
            j += 2
        name_tok = toks[sig[j]]
        table = _ident(name_tok)
        if name_tok.text.startswith('"#') and not temp:
            # Redshift: a table name that begins with # is a temporary table.
            for x in sig[:name_start]:
                if toks[x].low == "table":
                    toks[x] = Tok("word", "TEMP TABLE")
        j += 1
        attrs: dict = {}
        fks: list[dict] = []
        out_head = toks[:sig[j]] if j < len(sig) else toks
        if j < len(sig) and toks[sig[j]].text == "(":
            close = _matching(toks, sig, j)
            elems = _split_top(toks, sig[j] + 1, sig[close])
            new_elems = []
            for el in elems:
                new = self._table_element(el, table, attrs, fks)
                if new is not None:
                    new_elems.append(new)
            body = ", ".join(new_elems)
            rest_idx = sig[close] + 1
            rest = toks[rest_idx:]
            out = out_head + [Tok("punct", "("), Tok("raw", body), Tok("punct", ")")] + self._table_attributes(rest, attrs)
        else:  # CREATE TABLE ... AS SELECT / (LIKE ...) handled above; CTAS attributes come before AS
            out = toks[:sig[j]] + self._table_attributes(toks[sig[j]:], attrs) if j < len(sig) else toks
        marker = {"table": table.split(".")[-1]}
        if attrs:
            marker["attrs"] = attrs
        if fks:
            marker["fks"] = fks
        if len(marker) > 1:
            out.append(Tok("comment", " /*dev_redshift:" + json.dumps(marker, separators=(",", ":")).replace("*/", "* /") + ":dev_redshift*/"))
        return out

    def _table_element(self, el: list[Tok], table: str, attrs: dict, fks: list[dict]) -> str | None:
        sig = _sig(el)
        if not sig:
            return None
        first = el[sig[0]].low
        if first == "like":
            return _text(el)
        if first in ("constraint", "primary", "unique", "foreign", "check", "exclude"):
            k = 2 if first == "constraint" else 0
            cname = _ident(el[sig[1]]) if first == "constraint" else None
            what = el[sig[k]].low
            if what in ("check", "exclude"):
                raise Refusal("0A000", f"{what.upper()} constraints are not supported",
                              detail="Amazon Redshift supports only informational PRIMARY KEY, UNIQUE and FOREIGN KEY constraints.")
            if what == "foreign":
                cols_open = k + 2
                close = _matching(el, sig, cols_open)
                cols = [_ident(el[sig[x]]) for x in range(cols_open + 1, close) if el[sig[x]].text != ","]
                ref_at = close + 2
                ref_table = _ident(el[sig[ref_at]])
                while ref_at + 1 < len(sig) and el[sig[ref_at + 1]].text == ".":
                    ref_at += 2
                    ref_table = ref_table + "." + _ident(el[sig[ref_at]])
                ref_cols = []
                if ref_at + 1 < len(sig) and el[sig[ref_at + 1]].text == "(":
                    c2 = _matching(el, sig, ref_at + 1)
                    ref_cols = [_ident(el[sig[x]]) for x in range(ref_at + 2, c2) if el[sig[x]].text != ","]
                fks.append({"name": cname, "columns": cols, "ref_table": ref_table, "ref_columns": ref_cols})
                return None
            return _text(el)  # PRIMARY KEY / UNIQUE: PostgreSQL checks it; the DDL hook makes it informational
        # A column definition.
        col = _ident(el[sig[0]])
        if col in _SYSTEM_COLUMNS:
            raise Refusal("42701", f'column name "{col}" conflicts with a system column name')
        typ, n_type = _parse_type(el, sig, 1)
        pg_type, check = _column_type(typ, col)
        parts = [_quote(col), pg_type]
        k = 1 + n_type
        while k < len(sig):
            w = el[sig[k]].low
            if w == "encode":
                attrs.setdefault("encodings", {})[col] = el[sig[k + 1]].low
                k += 2
            elif w == "distkey":
                attrs["distkey"] = col
                attrs["diststyle"] = "key"
                k += 1
            elif w == "sortkey":
                attrs.setdefault("sortkey", []).append(col)
                attrs.setdefault("sortstyle", "compound")
                k += 1
            elif w == "identity":
                close = _matching(el, sig, k + 1)
                nums = [el[sig[x]].text for x in range(k + 2, close) if el[sig[x]].text != ","]
                seed, step = (nums + ["1", "1"])[:2]
                parts.append(f"GENERATED BY DEFAULT AS IDENTITY (START {seed} INCREMENT {step})")
                k = close + 1
            elif w == "generated":  # GENERATED BY DEFAULT AS IDENTITY [(seed, step)]
                e = k
                while e < len(sig) and el[sig[e]].low != "identity":
                    e += 1
                seed, step = "1", "1"
                end = e + 1
                if e + 1 < len(sig) and el[sig[e + 1]].text == "(":
                    close = _matching(el, sig, e + 1)
                    nums = [el[sig[x]].text for x in range(e + 2, close) if el[sig[x]].text != ","]
                    seed, step = (nums + ["1", "1"])[:2]
                    end = close + 1
                parts.append(f"GENERATED BY DEFAULT AS IDENTITY (START {seed} INCREMENT {step})")
                k = end
            elif w == "references":
                ref_table = _ident(el[sig[k + 1]])
                k += 2
                while k < len(sig) and el[sig[k]].text == ".":
                    ref_table += "." + _ident(el[sig[k + 1]])
                    k += 2
                ref_cols = []
                if k < len(sig) and el[sig[k]].text == "(":
                    close = _matching(el, sig, k)
                    ref_cols = [_ident(el[sig[x]]) for x in range(k + 1, close) if el[sig[x]].text != ","]
                    k = close + 1
                fks.append({"name": None, "columns": [col], "ref_table": ref_table, "ref_columns": ref_cols})
            elif w == "check":
                raise Refusal("0A000", "CHECK constraints are not supported",
                              detail="Amazon Redshift supports only informational PRIMARY KEY, UNIQUE and FOREIGN KEY constraints.")
            elif w == "default":
                # DEFAULT expr: up to the next constraint keyword.
                e = k + 1
                depth = 0
                while e < len(sig):
                    x = el[sig[e]]
                    if x.text == "(":
                        depth += 1
                    elif x.text == ")":
                        depth -= 1
                    elif depth == 0 and x.low in ("not", "null", "primary", "unique", "references", "encode", "distkey",
                                                  "sortkey", "identity", "generated", "collate", "constraint", "check"):
                        break
                    e += 1
                parts.append("DEFAULT " + _text(self._rewrite_expressions(el[sig[k + 1]:sig[e - 1] + 1])))
                k = e
            else:
                parts.append(el[sig[k]].text if el[sig[k]].kind != "qident" else el[sig[k]].text.lower())
                k += 1
        if check:
            parts.append(check)
        return " ".join(parts)

    @staticmethod
    def _table_attributes(rest: list[Tok], attrs: dict) -> list[Tok]:
        """Strips DISTSTYLE / DISTKEY(c) / [COMPOUND|INTERLEAVED] SORTKEY(c, ...) / SORTKEY AUTO / ENCODE AUTO / BACKUP."""
        sig = _sig(rest)
        keep: list[Tok] = []
        k = 0
        last = 0
        while k < len(sig):
            w = rest[sig[k]].low
            if w in ("diststyle", "backup", "encode"):
                keep += rest[last:sig[k]]
                if w == "diststyle":
                    attrs["diststyle"] = rest[sig[k + 1]].low
                k += 2
                last = sig[k - 1] + 1
            elif w in ("distkey", "sortkey", "compound", "interleaved"):
                keep += rest[last:sig[k]]
                style = "compound"
                if w in ("compound", "interleaved"):
                    style = w
                    k += 1
                key = rest[sig[k]].low
                if k + 1 < len(sig) and rest[sig[k + 1]].text == "(":
                    close = _matching(rest, sig, k + 1)
                    cols = [_ident(rest[sig[x]]) for x in range(k + 2, close) if rest[sig[x]].text != ","]
                    if key == "distkey":
                        attrs["distkey"] = cols[0] if cols else None
                        attrs["diststyle"] = "key"
                    else:
                        attrs["sortkey"] = cols
                        attrs["sortstyle"] = style
                    k = close + 1
                else:  # SORTKEY AUTO
                    if key == "sortkey":
                        attrs["sortstyle"] = "auto"
                    k += 2
                last = sig[k - 1] + 1
            elif w == "as" or w == "on":
                break
            else:
                k += 1
        keep += rest[last:]
        return keep

    # ------------------------------------------------------------------------------------------ ALTER TABLE
    def _alter_table(self, toks: list[Tok]) -> tuple[list[Tok], bool]:
        sig = _sig(toks)
        j = 2
        if toks[sig[j]].low == "if":
            j += 2
        if toks[sig[j]].low == "only":
            j += 1
        name_start = j
        while j + 1 < len(sig) and toks[sig[j + 1]].text == ".":
            j += 2
        table_text = "".join(t.text for t in toks[sig[name_start]:sig[j] + 1])
        table_plain = ".".join(_ident(toks[sig[x]]) for x in range(name_start, j + 1, 2))
        j += 1
        if j >= len(sig):
            return toks, False
        action = toks[sig[j]].low
        nxt = toks[sig[j + 1]].low if j + 1 < len(sig) else ""
        if action == "alter" and (nxt == "column" or (j + 2 < len(sig) and toks[sig[j + 2]].low == "type")):
            k = j + 2 if nxt == "column" else j + 1
            col = _ident(toks[sig[k]])
            if k + 1 < len(sig) and toks[sig[k + 1]].low == "type":
                typ, n = _parse_type(toks, sig, k + 2)
                base, length = typ
                if k + 2 + n < len(sig):
                    raise Refusal("0A000", "ALTER COLUMN TYPE does not support USING or further clauses")
                if base in ("varchar", "nvarchar", "character varying", "text"):
                    length = _varchar_len(length)
                    base = "varchar"
                return [Tok("raw", f"CALL {SCHEMA}.alter_column_type({_lit(table_plain)}, {_lit(col)}, {_lit(base)}, {int(length or 0)})")], True
            if k + 1 < len(sig) and toks[sig[k + 1]].low == "encode":
                return [Tok("raw", "SELECT 1 WHERE false")], False  # column encodings have no effect here
            return toks, False
        if action == "alter" and nxt in ("distkey", "sortkey", "diststyle", "encode", "compound", "interleaved"):
            return [Tok("raw", "SELECT 1 WHERE false")], False
        if action == "drop" and nxt != "constraint":
            k = j + 2 if nxt == "column" else j + 1
            if_exists = toks[sig[k]].low == "if" and k + 1 < len(sig) and toks[sig[k + 1]].low == "exists"
            if if_exists:
                k += 2
            col = _ident(toks[sig[k]])
            cascade = k + 1 < len(sig) and toks[sig[k + 1]].low == "cascade"
            return [Tok("raw", f"CALL {SCHEMA}.drop_column({_lit(table_plain)}, {_lit(col)}, {str(cascade).lower()}, {str(if_exists).lower()})")], False
        if action == "add" and nxt not in ("constraint", "primary", "unique", "foreign", "check"):
            k = j + 2 if nxt == "column" else j + 1
            if toks[sig[k]].low == "if":
                k += 3
            el = toks[sig[k]:]
            attrs: dict = {}
            fks: list[dict] = []
            new = self._table_element(el, table_plain, attrs, fks)
            head = "".join(t.text for t in toks[:sig[k]])
            return [Tok("raw", head + new)], False
        if action == "add":
            k = j + 1 if nxt == "constraint" else j
            what = toks[sig[k + 2]].low if nxt == "constraint" else nxt
            if what in ("check", "exclude"):
                raise Refusal("0A000", f"{what.upper()} constraints are not supported")
            if what == "foreign":  # accepted, informational: nothing to create here
                return [Tok("raw", "SELECT 1 WHERE false")], False
        _ = table_text
        return toks, False

    # ------------------------------------------------------------------------------------------ MERGE
    def _merge(self, toks: list[Tok]) -> list[Tok]:
        sig = _sig(toks)
        words = [toks[i].low for i in sig]
        if len(words) < 2 or words[1] != "into":
            raise syntax_error(toks[sig[1]].text if len(sig) > 1 else "MERGE")
        if "using" not in words:
            raise syntax_error(toks[sig[-1]].text)
        u = words.index("using")
        if toks[sig[u + 1]].text == "(":
            raise Refusal("0A000", "Subquery is not supported as a MERGE source",
                          detail="MERGE's source must be a table (source_table can't be a view or a subquery).")
        target = "".join(toks[i].text for i in sig[2:u])
        on = words.index("on", u)
        if words[-2:] == ["remove", "duplicates"]:
            src_toks = toks[sig[u + 1]:sig[on]]
            source = "".join(t.text for t in src_toks).strip()
            cond = "".join(t.text for t in toks[sig[on + 1]:sig[-2]])
            src_name = _text(src_toks[:1]).strip()
            alias = source.split()[-1] if len(source.split()) > 1 else src_name
            tgt_parts = target.split()
            tgt_alias = tgt_parts[-1] if len(tgt_parts) > 1 else tgt_parts[0]
            tgt_name = tgt_parts[0]
            raw = (f"WITH _rs_deleted AS (DELETE FROM {target} USING {source} WHERE {cond}) "
                   f"INSERT INTO {tgt_name} SELECT {alias}.* FROM {source}")
            _ = tgt_alias
            return [Tok("raw", raw)]
        whens = [k for k, w in enumerate(words) if w == "when"]
        if not whens:
            raise syntax_error(toks[sig[-1]].text)
        matched = not_matched = 0
        for k in whens:
            if words[k + 1] == "matched":
                matched += 1
                if words[k + 2] != "then":
                    raise syntax_error(toks[sig[k + 2]].text)
                if words[k + 3] not in ("update", "delete"):
                    raise syntax_error(toks[sig[k + 3]].text)
            elif words[k + 1] == "not" and words[k + 2] == "matched":
                not_matched += 1
                if words[k + 3] != "then":
                    raise syntax_error(toks[sig[k + 3]].text)
                if words[k + 4] != "insert":
                    raise syntax_error(toks[sig[k + 4]].text)
            else:
                raise syntax_error(toks[sig[k + 1]].text)
        if matched != 1 or not_matched != 1:
            raise Refusal("42601", "MERGE requires exactly one WHEN MATCHED and one WHEN NOT MATCHED clause",
                          detail="Amazon Redshift's MERGE: WHEN MATCHED THEN UPDATE|DELETE and WHEN NOT MATCHED THEN INSERT.")
        return toks

    # ------------------------------------------------------------------------------------------ SET
    @staticmethod
    def _set(toks: list[Tok]) -> list[Tok]:
        sig = _sig(toks)
        if len(sig) < 2:
            return toks
        k = 1
        if toks[sig[k]].low in ("session", "local"):
            k += 1
        name = toks[sig[k]].low
        if name in ("query_group", "enable_result_cache_for_session", "wlm_query_slot_count", "analyze_threshold_percent",
                    "enable_case_sensitive_identifier", "json_serialization_enable", "describe_field_name_in_uppercase",
                    "enable_case_sensitive_super_attribute", "parse_super_null_on_error", "datashare_break_glass_session_var",
                    "spectrum_query_maxerror", "mv_enable_aqmv_for_session", "auto_mv"):
            toks = list(toks)
            toks[sig[k]] = Tok("word", "dev_redshift." + name)
        return toks

    # ------------------------------------------------------------------------------------------ COPY/UNLOAD
    @staticmethod
    def _copy_unload(sql: str, kind: str) -> Translation:
        toks = tokenize(sql)
        sig = _sig(toks)
        words = [toks[i].low for i in sig]
        if kind == "copy":
            if "from" not in words:
                at = words.index("to") if "to" in words else len(words) - 1
                raise syntax_error(toks[sig[at]].text)
            f = words.index("from")
            src = toks[sig[f + 1]] if f + 1 < len(sig) else None
            if src is None or src.kind != "str":
                raise syntax_error(src.text if src is not None else "FROM")
        return Translation(sql, kind, special=kind)


# ------------------------------------------------------------------------------------------------ helpers
_TYPE_WORDS = {"int", "integer", "int2", "int4", "int8", "smallint", "bigint", "text", "varchar", "char", "numeric",
               "decimal", "real", "float", "float4", "float8", "boolean", "bool", "date", "timestamp", "timestamptz",
               "time", "timetz", "super", "varbyte", "jsonb", "json", "uuid", "precision", "varying", "character"}


def _rewrite_nvl2(toks: list[Tok]) -> list[Tok]:
    """NVL2(e, a, b) → (CASE WHEN (e) IS NOT NULL THEN (a) ELSE (b) END), innermost arguments first."""
    while True:
        sig = _sig(toks)
        at = next((j for j in range(len(sig) - 1) if toks[sig[j]].kind == "word" and toks[sig[j]].low == "nvl2"
                   and toks[sig[j + 1]].text == "("), None)
        if at is None:
            return toks
        close = _matching(toks, sig, at + 1)
        args = _split_top(toks, sig[at + 1] + 1, sig[close])
        if len(args) != 3:
            raise Refusal("42883", "function nvl2 requires 3 arguments")
        e, a, b = (_text(x) for x in args)
        raw = Tok("raw", f"(CASE WHEN ({e}) IS NOT NULL THEN ({a}) ELSE ({b}) END)")
        toks = toks[:sig[at]] + tokenize(raw.text) + toks[sig[close] + 1:]


def _rewrite_cast_super(toks: list[Tok]) -> list[Tok]:
    """CAST(x AS SUPER) → to_super(x): Redshift makes a string a SUPER string; jsonb's cast would parse it."""
    sig = _sig(toks)
    for j in range(len(sig) - 3, -1, -1):
        if toks[sig[j]].kind == "word" and toks[sig[j]].low == "cast" and toks[sig[j + 1]].text == "(":
            close = _matching(toks, sig, j + 1)
            if close >= 3 and toks[sig[close - 1]].low == "super" and toks[sig[close - 2]].low == "as":
                toks = toks[:sig[j]] + [Tok("word", f"{SCHEMA}.to_super"), Tok("punct", "(")] + \
                    toks[sig[j + 1] + 1:sig[close - 2]] + toks[sig[close]:]
                sig = _sig(toks)
    return toks


def _max_param(sql: str) -> int:
    if "$" not in sql:
        return 0
    return max((int(m) for m in re.findall(r"\$(\d+)", sql)), default=0)


def _inside_cast(toks: list[Tok], sig: list[int], j: int) -> bool:
    """True when the AS at sig[j-1] is CAST(expr AS type)'s AS (depth-counting back to a CAST( )."""
    depth = 0
    for k in range(j - 2, -1, -1):
        t = toks[sig[k]].text
        if t == ")":
            depth += 1
        elif t == "(":
            if depth == 0:
                return k > 0 and toks[sig[k - 1]].low in ("cast", "try_cast")
            depth -= 1
    return False


def _type_before_paren(toks, sig, j) -> bool:
    depth = 0
    for k in range(j, -1, -1):
        t = toks[sig[k]].text
        if t == ")":
            depth += 1
        elif t == "(":
            depth -= 1
            if depth == 0:
                return k > 0 and toks[sig[k - 1]].low in _TYPE_WORDS
    return False


def _cast_type(w: str, toks, sig, j) -> str | None:
    if w == "super":
        return "jsonb"
    if w in ("varbyte", "varbinary"):
        return "bytea"
    if w == "binary" and j + 1 < len(sig) and toks[sig[j + 1]].low == "varying":
        return "bytea"
    if w in _UNSUPPORTED_TYPES and w != "oid":
        raise Refusal("42704", f'type "{w}" does not exist')
    return None


def _matching(toks: list[Tok], sig: list[int], j: int) -> int:
    depth = 0
    for k in range(j, len(sig)):
        t = toks[sig[k]].text
        if t == "(" or t == "[":
            depth += 1
        elif t == ")" or t == "]":
            depth -= 1
            if depth == 0:
                return k
    raise syntax_error("end of input")


def _split_top(toks: list[Tok], start: int, end: int) -> list[list[Tok]]:
    out, cur, depth = [], [], 0
    for t in toks[start:end]:
        if t.text in ("(", "["):
            depth += 1
        elif t.text in (")", "]"):
            depth -= 1
        if t.text == "," and depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def _text(toks: list[Tok]) -> str:
    return "".join(t.text for t in toks).strip()


def _ident(t: Tok) -> str:
    if t.kind == "qident":
        return t.text[1:-1].replace('""', '"').lower()
    return t.text.lower()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _parse_type(toks: list[Tok], sig: list[int], k: int) -> tuple[tuple[str, object], int]:
    """Reads a type name at sig[k]: returns ((base, modifier), tokens used). modifier: int, 'max', (p, s) or None."""
    if k >= len(sig):
        raise syntax_error("end of input")
    w = toks[sig[k]].low
    used = 1
    base = w
    if w in ("character", "char", "nchar") and k + 1 < len(sig) and toks[sig[k + 1]].low == "varying":
        base, used = "varchar", 2
    elif w == "binary" and k + 1 < len(sig) and toks[sig[k + 1]].low == "varying":
        base, used = "varbyte", 2
    elif w == "double" and k + 1 < len(sig) and toks[sig[k + 1]].low == "precision":
        base, used = "double precision", 2
    elif w in ("timestamp", "time") and k + 2 < len(sig) and toks[sig[k + 1]].low in ("with", "without"):
        base, used = w + (" with time zone" if toks[sig[k + 1]].low == "with" else ""), 4
    mod: object = None
    if k + used < len(sig) and toks[sig[k + used]].text == "(":
        close = _matching(toks, sig, k + used)
        inner = [toks[sig[x]] for x in range(k + used + 1, close) if toks[sig[x]].text != ","]
        if len(inner) == 1 and inner[0].low == "max":
            mod = "max"
        elif len(inner) == 1:
            mod = int(inner[0].text)
        elif len(inner) == 2:
            mod = (int(inner[0].text), int(inner[1].text))
        used = close - k + 1
    if k + used < len(sig) and toks[sig[k + used]].text == "[":
        raise syntax_error("[")
    return (base, mod), used


def _varchar_len(mod) -> int:
    if mod is None:
        return 256
    if mod == "max":
        return MAX_VARCHAR
    if isinstance(mod, int):
        if mod > MAX_VARCHAR:
            raise Refusal("22023", f"length for type varchar cannot exceed {MAX_VARCHAR}")
        if mod < 1:
            raise Refusal("22023", "length for type varchar must be at least 1")
        return mod
    raise syntax_error(",")


def _column_type(typ: tuple[str, object], col: str) -> tuple[str, str | None]:
    """Redshift column type → (PostgreSQL type, extra column constraint)."""
    base, mod = typ
    h = hashlib.md5(col.encode()).hexdigest()[:10]
    if base in ("varchar", "nvarchar", "text"):
        n = _varchar_len(mod if base != "text" else None)
        return f"varchar({n})", f"CONSTRAINT _rsvc_{n}_{h} CHECK (octet_length({_quote(col)}) <= {n})"
    if base in ("char", "character", "nchar", "bpchar"):
        n = 1 if mod is None else (MAX_CHAR if mod == "max" else mod)
        if n > MAX_CHAR:
            raise Refusal("22023", f"length for type char cannot exceed {MAX_CHAR}")
        return f"char({n})", f"CONSTRAINT _rsvc_{n}_{h} CHECK (octet_length({_quote(col)}) <= {n})"
    if base in ("decimal", "numeric"):
        if mod is None:
            return "numeric(18,0)", None
        p, s = (mod, 0) if isinstance(mod, int) else mod
        if not 1 <= p <= MAX_DECIMAL_PRECISION:
            raise Refusal("22023", f"NUMERIC precision {p} must be between 1 and {MAX_DECIMAL_PRECISION}")
        if not 0 <= s <= p:
            raise Refusal("22023", f"NUMERIC scale {s} must be between 0 and precision {p}")
        return f"numeric({p},{s})", None
    if base in ("varbyte", "varbinary"):
        n = VARBYTE_DEFAULT if mod is None else (VARBYTE_MAX if mod == "max" else mod)
        if n > VARBYTE_MAX:
            raise Refusal("22023", f"length for type varbyte cannot exceed {VARBYTE_MAX}")
        return "bytea", f"CONSTRAINT _rsvb_{n}_{h} CHECK (octet_length({_quote(col)}) <= {n})"
    if base == "super":
        return "jsonb", f"CONSTRAINT _rssuper_{h} CHECK ({SCHEMA}.super_ok({_quote(col)}))"
    if base in _UNSUPPORTED_TYPES:
        raise Refusal("42704", f'type "{base}" does not exist')
    if base in ("int", "integer", "int4", "smallint", "int2", "bigint", "int8", "real", "float4", "float", "float8",
                "double precision", "boolean", "bool", "date", "timestamp", "timestamptz", "timestamp with time zone",
                "time", "timetz", "time with time zone", "geometry", "geography", "hllsketch"):
        if base == "float" and isinstance(mod, int):
            return ("real" if mod <= 24 else "double precision"), None
        return base, None
    raise Refusal("42704", f'type "{base}" does not exist')

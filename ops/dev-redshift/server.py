#!/usr/bin/env python3
"""dev-redshift: a local Amazon Redshift stand-in for mongoshift's tests and demo.

A PostgreSQL wire-protocol (v3) proxy in front of a real PostgreSQL. Startup and authentication are relayed to
the backend (SCRAM works end to end; SSLRequest is answered 'N'); every client message is relayed except Query
and Parse, whose SQL is checked against Redshift's rules and translated (sqlrules.py), and Bind, checked for
Redshift's limits. Backend replies are relayed as they come (DataRow traffic without per-row work unless a
SUPER or VARBYTE column needs Redshift's text form); errors are mapped to Redshift's texts. COPY from S3 and
UNLOAD to S3 run here, against an S3 emulator, inside the client's own backend session and transaction.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import signal
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadunload  # noqa: E402
from sqlrules import (MAX_PARAMS, REFUSAL_MARK, SCHEMA, Refusal, Translator, first_words,  # noqa: E402
                      split_statements)

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
OID_JSONB, OID_BYTEA, OID_SUPER, OID_VARBYTE = 3802, 17, 4000, 6551
_REFUSED_RE = re.compile(REFUSAL_MARK + r"(\d+)")
_WS_OUTSIDE_STRINGS = re.compile(r'("(?:[^"\\]|\\.)*")|\s+')
_pack = struct.Struct("!I").pack
_unpack_from = struct.Struct("!I").unpack_from


def message(kind: bytes, payload: bytes) -> bytes:
    return kind + _pack(len(payload) + 4) + payload


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def error_fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def build_error(fields: dict[str, str], kind: bytes = b"E") -> bytes:
    body = b"".join(k.encode() + cstr(v) for k, v in fields.items()) + b"\0"
    return message(kind, body)


def refusal_error(r: Refusal) -> dict[str, str]:
    f = {"S": "ERROR", "V": "ERROR", "C": r.sqlstate, "M": r.message}
    if r.detail:
        f["D"] = r.detail
    return f


def notice(text: str, severity: str = "INFO") -> bytes:
    return build_error({"S": severity, "V": severity, "C": "00000", "M": text}, b"N")


def super_text(v: bytes) -> bytes:
    """jsonb's text form → Redshift's SUPER text form (no blanks between tokens)."""
    return _WS_OUTSIDE_STRINGS.sub(lambda m: m.group(1) or "", v.decode()).encode()


class Server:
    def __init__(self, args):
        self.args = args
        self.translator = Translator()
        self.log = open(os.path.join(args.dir, "statements.jsonl"), "a", buffering=1, encoding="utf-8")
        self.log_lock = threading.Lock()
        self.catalog_ready: set[str] = set()
        self.catalog_lock = asyncio.Lock()
        self.admin = loadunload.Admin(args)
        self.query_ids = itertools.count(int(time.time()) % 1000000 * 10)
        self.refusal_ids = itertools.count(1)
        self.s3 = loadunload.S3(args)

    def write_log(self, session: int, sql: str, ok: bool, error: str | None, at: str, application: str = "") -> None:
        line = json.dumps({"time": at, "session": session, "application": application, "sql": sql, "ok": ok, "error": error},
                          ensure_ascii=False)
        with self.log_lock:
            self.log.write(line + "\n")

    async def ensure_catalog(self, database: str) -> None:
        if database in self.catalog_ready:
            return
        async with self.catalog_lock:
            if database in self.catalog_ready:
                return
            await asyncio.to_thread(self.admin.install_catalog, database)
            self.catalog_ready.add(database)

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        session = Session(self, creader, cwriter)
        try:
            await session.run()
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            pass
        except Exception as e:  # a bug here must not take the server down
            print(f"dev-redshift: session error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            await session.close()


class LogGroup:
    """Statements whose outcome the next ReadyForQuery settles (one simple Query, or Parses up to a Sync)."""

    __slots__ = ("records", "done", "failed_at", "error", "multi")

    def __init__(self, multi: bool):
        self.records: list[list] = []  # [sql, ok, error, time]
        self.done = 0
        self.failed_at = -1
        self.error: str | None = None
        self.multi = multi


class Session:
    def __init__(self, server: Server, creader, cwriter):
        self.server = server
        self.creader, self.cwriter = creader, cwriter
        self.breader = self.bwriter = None
        self.pid = 0
        self.database = "postgres"
        self.user = ""
        self.txn_status = b"I"
        self.outstanding = 0
        self.unsynced = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.internal: asyncio.Queue | None = None
        self.rewrite: list[tuple[int, int]] | None = None
        self.refusals: dict[int, dict[str, str]] = {}
        self.groups: list[LogGroup] = []
        self.open_group: LogGroup | None = None
        self.relay_task = None
        self.our_calls = 0

    # ------------------------------------------------------------------------------------------ startup
    async def read_startup(self) -> bytes:
        while True:
            n = _unpack_from(await self.creader.readexactly(4))[0]
            body = await self.creader.readexactly(n - 4)
            code = _unpack_from(body)[0]
            if code in (SSL_REQUEST, GSS_REQUEST):
                self.cwriter.write(b"N")
                await self.cwriter.drain()
                continue
            return body

    async def run(self) -> None:
        body = await self.read_startup()
        code = _unpack_from(body)[0]
        a = self.server.args
        if code == CANCEL_REQUEST:
            r, w = await asyncio.open_connection(a.backend_host, a.backend_port)
            w.write(_pack(len(body) + 4) + body)
            await w.drain()
            w.close()
            return
        parts = body[4:].split(b"\0")
        params: dict[str, str] = {}
        for k, v in zip(parts[0::2], parts[1::2]):
            if k:
                params[k.decode()] = v.decode()
        self.user = params.get("user", "")
        self.database = params.get("database", self.user)
        self.application = params.get("application_name", "")
        # Redshift's session defaults: serializable isolation, UTC, ISO dates. dev_redshift.session marks the
        # sessions the DDL hook acts on (direct PostgreSQL sessions keep PostgreSQL's behaviour).
        extra = ("-c default_transaction_isolation=serializable -c TimeZone=UTC -c DateStyle=ISO,MDY "
                 "-c dev_redshift.session=on -c intervalstyle=postgres -c extra_float_digits=0")
        params["options"] = (params.get("options", "") + " " + extra).strip()
        await self.server.ensure_catalog(self.database)
        self.breader, self.bwriter = await asyncio.open_connection(a.backend_host, a.backend_port)
        payload = _pack(code) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
        self.bwriter.write(_pack(len(payload) + 4) + payload)
        await self.bwriter.drain()
        # Authentication: relay both ways until the backend is ready (or refuses).
        while True:
            kind, data = await self.read_backend()
            self.cwriter.write(message(kind, data))
            if kind == b"K":
                self.pid = _unpack_from(data)[0]
            elif kind == b"E":
                await self.cwriter.drain()
                return
            elif kind == b"Z":
                self.txn_status = data[:1]
                await self.cwriter.drain()
                break
            elif kind == b"R":
                auth = _unpack_from(data)[0]
                if auth in (2, 3, 5, 7, 9, 10, 11):  # the client answers these
                    await self.cwriter.drain()
                    ck, cd = await self.read_client()
                    self.bwriter.write(message(ck, cd))
                    await self.bwriter.drain()
        self.relay_task = asyncio.create_task(self.relay_backend())
        await self.client_loop()

    async def read_backend(self) -> tuple[bytes, bytes]:
        head = await self.breader.readexactly(5)
        n = _unpack_from(head, 1)[0]
        return head[:1], await self.breader.readexactly(n - 4)

    async def read_client(self) -> tuple[bytes, bytes]:
        head = await self.creader.readexactly(5)
        n = _unpack_from(head, 1)[0]
        return head[:1], await self.creader.readexactly(n - 4)

    async def close(self) -> None:
        if self.relay_task:
            self.relay_task.cancel()
        for w in (self.bwriter, self.cwriter):
            if w is not None:
                try:
                    w.close()
                except Exception:
                    pass
        self.flush_groups(force=True)

    # ------------------------------------------------------------------------------------------ logging
    def now(self) -> str:
        return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

    def log_statement(self, sql: str, refused: str | None = None, multi: bool = False) -> None:
        g = self.open_group
        if g is None:
            g = self.open_group = LogGroup(multi)
            self.groups.append(g)
        g.records.append([sql, refused is None, refused, self.now()])
        if refused is not None and g.failed_at < 0:
            g.failed_at = len(g.records) - 1
            g.error = refused

    def close_group(self) -> None:
        self.open_group = None

    def flush_groups(self, force: bool = False) -> None:
        """Called at ReadyForQuery: the oldest group is settled."""
        if not self.groups:
            return
        groups = self.groups if force else self.groups[:1]
        for g in groups:
            for i, (sql, ok, err, at) in enumerate(g.records):
                if g.failed_at >= 0:
                    if i == g.failed_at:
                        ok, err = False, err or g.error
                    elif i > g.failed_at:
                        ok, err = False, err or "not run: an earlier statement of the same request failed"
                self.server.write_log(self.pid, sql, ok, err, at, getattr(self, "application", ""))
        if force:
            self.groups.clear()
        else:
            self.groups.pop(0)
            if self.open_group is not None and self.open_group not in self.groups:
                self.open_group = None

    # ------------------------------------------------------------------------------------------ backend → client
    def transform(self, kind: int, payload: bytes) -> bytes | None:
        """Rewrites one backend message for the client (None: relay as is)."""
        if kind == 84:  # 'T' RowDescription: Redshift's OIDs for SUPER and VARBYTE; rows of those need rewriting
            count = struct.unpack_from("!H", payload)[0]
            pos = 2
            out = bytearray(payload[:2])
            plan = []
            changed = False
            for i in range(count):
                end = payload.index(b"\0", pos) + 1
                table, attnum, oid, size, mod, fmt = struct.unpack_from("!IhIhih", payload, end)
                if oid in (OID_JSONB, OID_BYTEA):
                    changed = True
                    if fmt == 0:
                        plan.append((i, oid))
                    oid = OID_SUPER if oid == OID_JSONB else OID_VARBYTE
                    size = -1
                out += payload[pos:end] + struct.pack("!IhIhih", table, attnum, oid, size, mod, fmt)
                pos = end + 18
            self.rewrite = plan or None
            return message(b"T", bytes(out)) if changed else None
        if kind == 68:  # 'D' DataRow with a SUPER / VARBYTE column
            plan = self.rewrite
            count = struct.unpack_from("!H", payload)[0]
            pos = 2
            fields = []
            for _ in range(count):
                n = struct.unpack_from("!i", payload, pos)[0]
                pos += 4
                if n < 0:
                    fields.append(None)
                else:
                    fields.append(payload[pos:pos + n])
                    pos += n
            for i, oid in plan:
                v = fields[i]
                if v is not None:
                    fields[i] = super_text(v) if oid == OID_JSONB else (v[2:] if v.startswith(b"\\x") else v)
            body = bytearray(struct.pack("!H", count))
            for v in fields:
                if v is None:
                    body += b"\xff\xff\xff\xff"
                else:
                    body += struct.pack("!i", len(v)) + v
            return message(b"D", bytes(body))
        if kind == 69:  # 'E'
            fields = self.map_error(error_fields(payload))
            g = self.groups[0] if self.groups else None
            if g is not None and g.failed_at < 0:
                g.failed_at = min(g.done, len(g.records) - 1) if g.multi else len(g.records) - 1
                g.error = fields.get("M")
            self.rewrite = None
            return build_error(fields)
        if kind in (67, 73):  # 'C' CommandComplete / 'I' EmptyQueryResponse
            self.rewrite = None
            if self.groups:
                self.groups[0].done += 1
            if kind == 67 and self.our_calls and payload == b"CALL\0":  # ALTER TABLE run as a dev-redshift procedure
                self.our_calls -= 1
                return message(b"C", cstr("ALTER TABLE"))
            return None
        return None

    def map_error(self, f: dict[str, str]) -> dict[str, str]:
        msg = f.get("M", "")
        m = _REFUSED_RE.search(msg)
        if m and int(m.group(1)) in self.refusals:
            return self.refusals.pop(int(m.group(1)))
        code = f.get("C", "")
        if code == "40001":
            # Redshift: ERROR: 1023 DETAIL: Serializable isolation violation on table - <id>, transactions
            # forming the cycle are: <xids> (pid:<pid>)
            table = f.get("t") or "0"
            return {"S": "ERROR", "V": "ERROR", "C": "XX000", "M": "1023",
                    "D": f"Serializable isolation violation on table - {table}, transactions forming the cycle are: "
                         f"{self.pid} (pid:{self.pid})"}
        if code == "23514":
            name = f.get("n", "")
            mm = re.match(r"_rsvc_(\d+)_", name)
            if mm:
                return {"S": "ERROR", "V": "ERROR", "C": "22001", "M": f"value too long for type character varying({mm.group(1)})"}
            mm = re.match(r"_rsvb_(\d+)_", name)
            if mm:
                return {"S": "ERROR", "V": "ERROR", "C": "22001", "M": f"value too long for type varbyte({mm.group(1)})"}
            if name.startswith("_rssuper_"):
                return {"S": "ERROR", "V": "ERROR", "C": "22001", "M": "Value of SUPER type exceeds the maximum string length 65535"}
        if code == "22P02" and msg.startswith("invalid input syntax for type json"):
            return {"S": "ERROR", "V": "ERROR", "C": "XX000", "M": "JSON parsing error", "D": f.get("D", msg)}
        if msg.startswith("MERGE command cannot affect row a second time"):
            return {"S": "ERROR", "V": "ERROR", "C": "XX000", "M": "Found multiple matches to update the same tuple."}
        if msg.startswith("permission denied for view "):
            f = dict(f)
            f["M"] = "permission denied for relation " + msg[len("permission denied for view "):]
            return f
        if SCHEMA in msg:
            f = dict(f)
            f["M"] = msg.replace(SCHEMA + ".", "")
        return f

    async def relay_backend(self) -> None:
        reader, writer = self.breader, self.cwriter
        buf = bytearray()
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    break
                buf += data
                pos = 0
                flushed = 0
                end_buf = len(buf)
                out = []
                while pos + 5 <= end_buf:
                    kind = buf[pos]
                    end = pos + 1 + _unpack_from(buf, pos + 1)[0]
                    if end > end_buf:
                        break
                    if self.internal is not None:
                        if flushed < pos:
                            out.append(bytes(buf[flushed:pos]))
                        self.internal.put_nowait((kind, bytes(buf[pos + 5:end])))
                        if kind == 90:
                            self.txn_status = bytes(buf[pos + 5:pos + 6])
                        pos = flushed = end
                        continue
                    if kind == 68 and self.rewrite is None:  # the hot path: DataRow, relayed untouched
                        pos = end
                        continue
                    if kind in (84, 68, 69, 67, 73):
                        new = self.transform(kind, bytes(buf[pos + 5:end]))
                        if new is not None:
                            if flushed < pos:
                                out.append(bytes(buf[flushed:pos]))
                            out.append(new)
                            flushed = end
                    elif kind == 90:  # ReadyForQuery
                        self.txn_status = bytes(buf[pos + 5:pos + 6])
                        self.rewrite = None
                        self.flush_groups()
                        self.outstanding -= 1
                        if self.outstanding <= 0:
                            self.outstanding = 0
                            self.idle.set()
                    pos = end
                if flushed < pos:
                    out.append(bytes(buf[flushed:pos]))
                del buf[:pos]
                if out:
                    writer.writelines(out)
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    # ------------------------------------------------------------------------------------------ client → backend
    def refuse_marker(self, fields: dict[str, str]) -> str:
        n = next(self.server.refusal_ids)
        self.refusals[n] = fields
        return f'SELECT "{REFUSAL_MARK}{n}"'

    def send_backend(self, data: bytes) -> None:
        self.bwriter.write(data)

    async def client_loop(self) -> None:
        while True:
            kind, data = await self.read_client()
            if kind == b"Q":
                await self.handle_query(data[:-1].decode("utf-8", "replace"))
            elif kind == b"P":
                await self.handle_parse(data)
            elif kind == b"B":
                self.handle_bind(data)
            elif kind == b"S":
                self.close_group()
                self.outstanding += 1
                self.idle.clear()
                self.unsynced = False
                self.send_backend(message(kind, data))
            elif kind == b"X":
                self.send_backend(message(kind, data))
                await self.bwriter.drain()
                return
            else:
                self.unsynced = kind in (b"D", b"E", b"C", b"H", b"F")
                self.send_backend(message(kind, data))
            if self.creader._buffer.__len__() == 0:  # nothing more pipelined: push what we have
                await self.bwriter.drain()

    async def handle_parse(self, data: bytes) -> None:
        name_end = data.index(b"\0")
        q_end = data.index(b"\0", name_end + 1)
        sql = data[name_end + 1:q_end].decode("utf-8", "replace")
        rest = data[q_end + 1:]
        was_unsynced = self.unsynced
        self.unsynced = True
        try:
            t = self.server.translator.translate(sql)
            if t.special:
                raise Refusal("0A000", f"{t.special.upper()} through the extended query protocol is not supported by dev-redshift",
                              detail="Send COPY and UNLOAD as a simple query.")
            nparams = struct.unpack_from("!H", rest)[0]
            if max(t.max_param, nparams) > MAX_PARAMS:
                raise Refusal("54000", f"too many parameters: {max(t.max_param, nparams)} (the limit is {MAX_PARAMS})")
            if t.alter_type and self.txn_status != b"I":
                raise Refusal("25001", "ALTER TABLE ALTER COLUMN cannot run inside a transaction block")
            if t.truncate and self.txn_status == b"T" and self.outstanding == 0 and not was_unsynced:
                await self.internal_silent("COMMIT")
            self.log_statement(sql)
            out = t.sql
            if out.startswith("CALL " + SCHEMA):
                self.our_calls += 1
        except Refusal as r:
            self.log_statement(sql, refused=r.message)
            out = self.refuse_marker(refusal_error(r))
            rest = b"\0\0"
        self.send_backend(message(b"P", data[:name_end + 1] + cstr(out) + rest))

    def handle_bind(self, data: bytes) -> None:
        self.unsynced = True
        p_end = data.index(b"\0")
        s_end = data.index(b"\0", p_end + 1)
        pos = s_end + 1
        nfmt = struct.unpack_from("!H", data, pos)[0]
        pos += 2 + 2 * nfmt
        nparams = struct.unpack_from("!H", data, pos)[0]
        pos += 2
        for _ in range(nparams):
            n = struct.unpack_from("!i", data, pos)[0]
            pos += 4 + max(n, 0)
        nres = struct.unpack_from("!H", data, pos)[0]
        res = struct.unpack_from(f"!{nres}H", data, pos + 2) if nres else ()
        refusal = None
        if any(res):
            refusal = Refusal("0A000", "binary format for result columns is not supported",
                              detail="Amazon Redshift returns results in text format.")
        elif nparams > MAX_PARAMS:
            refusal = Refusal("54000", f"too many parameters: {nparams} (the limit is {MAX_PARAMS})")
        if refusal is None:
            self.send_backend(message(b"B", data))
            return
        n = next(self.server.refusal_ids)
        self.refusals[n] = refusal_error(refusal)
        # A Bind to a statement that does not exist fails at once, in order, with the marker in its message.
        self.send_backend(message(b"B", data[:p_end + 1] + cstr(f"{REFUSAL_MARK}{n}") + b"\0\0\0\0\0\0"))

    async def handle_query(self, sql: str) -> None:
        if len(sql) > 4 * 1024 * 1024 and len(sql.encode()) > 16 * 1024 * 1024:
            r = Refusal("54000", f"Statement is too large. Statement Size: {len(sql.encode())} bytes. Maximum Allowed: 16777216 bytes")
            self.close_group()
            self.log_statement(sql, refused=r.message)
            self.close_group()
            return self.forward_query(self.refuse_marker(refusal_error(r)))
        statements = split_statements(sql)
        self.close_group()
        if not statements:
            self.log_statement(sql)
            self.close_group()
            return self.forward_query(sql)
        translations = []
        refused = None
        for s in statements:
            try:
                translations.append(self.server.translator.translate(s))
            except Refusal as r:
                refused = r
                translations.append(None)
        multi = len(statements) > 1
        if refused is not None:
            # Like a syntax error: nothing in the query string runs.
            for s, t in zip(statements, translations):
                self.log_statement(s.strip(), refused=None if t is not None else refused.message, multi=multi)
            g = self.open_group
            g.failed_at = translations.index(None)
            g.error = refused.message
            self.close_group()
            return self.forward_query(self.refuse_marker(refusal_error(refused)))
        for s in statements:
            self.log_statement(s.strip(), multi=multi)
        self.close_group()
        self.our_calls += sum(1 for t in translations if t.sql.startswith("CALL " + SCHEMA))
        if not any(t.special or t.truncate or t.alter_type for t in translations):
            if len(translations) == 1:
                return self.forward_query(translations[0].sql)
            return self.forward_query(";".join(t.sql for t in translations))
        await self.orchestrate(statements, translations)

    def forward_query(self, sql: str) -> None:
        self.outstanding += 1
        self.idle.clear()
        self.send_backend(message(b"Q", cstr(sql)))

    # ------------------------------------------------------------------------------------------ internal operations
    async def begin_internal(self) -> None:
        await self.bwriter.drain()
        await self.idle.wait()
        self.internal = asyncio.Queue()

    def end_internal(self) -> None:
        self.internal = None

    async def next_internal(self) -> tuple[int, bytes]:
        return await self.internal.get()

    async def internal_silent(self, sql: str) -> None:
        await self.begin_internal()
        try:
            self.send_backend(message(b"Q", cstr(sql)))
            await self.bwriter.drain()
            while (await self.next_internal())[0] != 90:
                pass
        finally:
            self.end_internal()

    async def run_relayed(self, sql: str, client_out: list[bytes]) -> bool:
        """Runs one statement on the backend; its replies (except ReadyForQuery) go to the client. True: no error."""
        self.send_backend(message(b"Q", cstr(sql)))
        await self.bwriter.drain()
        ok = True
        while True:
            kind, payload = await self.next_internal()
            if kind == 90:
                return ok
            if kind == 69:
                ok = False
                client_out.append(build_error(self.map_error(error_fields(payload))))
                continue
            new = self.transform(kind, payload) if kind in (84, 67) or (kind == 68 and self.rewrite) else None
            client_out.append(new if new is not None else message(bytes([kind]), payload))
            if kind in (67, 73):
                self.rewrite = None
            if len(client_out) > 512:
                self.cwriter.writelines(client_out)
                client_out.clear()
                await self.cwriter.drain()

    async def run_collect(self, sql: str) -> tuple[list[tuple[str, int, int]], list[list[bytes | None]], dict | None]:
        """Runs one query on the backend for the proxy itself: (columns, rows, error fields)."""
        self.send_backend(message(b"Q", cstr(sql)))
        await self.bwriter.drain()
        cols: list[tuple[str, int, int]] = []
        rows: list[list[bytes | None]] = []
        err = None
        while True:
            kind, payload = await self.next_internal()
            if kind == 90:
                return cols, rows, err
            if kind == 69:
                err = self.map_error(error_fields(payload))
            elif kind == 84:
                count = struct.unpack_from("!H", payload)[0]
                pos = 2
                for _ in range(count):
                    end = payload.index(b"\0", pos)
                    name = payload[pos:end].decode()
                    _, _, oid, _, mod, _ = struct.unpack_from("!IhIhih", payload, end + 1)
                    cols.append((name, oid, mod))
                    pos = end + 19
            elif kind == 68:
                count = struct.unpack_from("!H", payload)[0]
                pos = 2
                row = []
                for _ in range(count):
                    n = struct.unpack_from("!i", payload, pos)[0]
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(payload[pos:pos + n])
                        pos += n
                rows.append(row)

    async def raise_in_backend(self, fields: dict[str, str], client_out: list[bytes]) -> None:
        """Fails the client's statement inside the backend too, so an open transaction block is aborted."""
        await self.run_relayed(self.refuse_marker(fields), client_out)

    async def orchestrate(self, statements: list[str], translations) -> None:
        """A simple query with COPY, UNLOAD, TRUNCATE or ALTER COLUMN TYPE: statement by statement."""
        await self.begin_internal()
        out: list[bytes] = []
        group = self.groups[-1] if self.groups else None
        try:
            for i, t in enumerate(translations):
                if group is not None:
                    group.done = i
                if t.alter_type and self.txn_status != b"I":
                    r = Refusal("25001", "ALTER TABLE ALTER COLUMN cannot run inside a transaction block")
                    await self.raise_in_backend(refusal_error(r), out)
                    ok = False
                elif t.special == "copy":
                    ok = await loadunload.run_copy(self, t.sql, out)
                elif t.special == "unload":
                    ok = await loadunload.run_unload(self, t.sql, out)
                else:
                    if t.truncate and self.txn_status in (b"T", b"E"):
                        # Redshift: TRUNCATE commits the transaction it runs in.
                        self.send_backend(message(b"Q", cstr("COMMIT")))
                        await self.bwriter.drain()
                        while (await self.next_internal())[0] != 90:
                            pass
                    ok = await self.run_relayed(t.sql, out)
                if not ok:
                    if group is not None and group.failed_at < 0:
                        group.failed_at = i
                    break
        finally:
            self.end_internal()
        out.append(message(b"Z", self.txn_status))
        self.cwriter.writelines(out)
        await self.cwriter.drain()
        self.flush_groups()

    # used by loadunload
    def new_query_id(self) -> int:
        return next(self.server.query_ids)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend-host", default="127.0.0.1")
    p.add_argument("--backend-port", type=int, required=True)
    p.add_argument("--admin-user", default="postgres", help="backend superuser for the catalog and load errors (trust auth)")
    p.add_argument("--dir", required=True, help="where statements.jsonl is written")
    p.add_argument("--slices", type=int, default=int(os.environ.get("DEV_REDSHIFT_SLICES", "2")))
    p.add_argument("--s3-endpoint", required=True)
    p.add_argument("--s3-access-key", default="devredshift")
    p.add_argument("--s3-secret-key", default="devredshift-secret")
    p.add_argument("--region", default="us-east-1")
    args = p.parse_args()
    server = Server(args)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", args.port, limit=1 << 20)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready postgresql://127.0.0.1:{args.port}", flush=True)
    async with srv:
        await stop.wait()


if __name__ == "__main__":
    _ = (first_words, hashlib)
    asyncio.run(main())

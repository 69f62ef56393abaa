#!/usr/bin/env python3
"""mongoshift's local MongoDB dev server: for trying and testing only, never for production data.

A MongoDB wire-protocol front end (OP_MSG, plus OP_QUERY for the legacy handshake) built on mongoeco 4.11.0's
query, update, sort, projection and aggregation engines. It adds what plain mongoeco lacks for a CDC replicator:

* storage hashed by ``_id``, so inserts and upserts that create documents cost O(1), not O(collection size);
* change streams over the wire: ``aggregate`` with a leading ``$changeStream`` (collection, database and cluster
  level; resumeAfter / startAfter / startAtOperationTime; fullDocument modes), awaiting ``getMore`` honouring
  ``maxTimeMS``, ``postBatchResumeToken`` in every batch, error 286 (ChangeStreamHistoryLost) for a token outside
  the retained history, ``drop`` then ``invalidate`` on collection drop;
* ``operationTime`` in every reply (the cluster time of the newest event), int64 cursor ids, default batch sizes
  (101 first batch, then up to 16 MiB per getMore);
* ``--replset NAME`` so drivers see a one-member replica set primary;
* ``--data FILE`` to keep documents and the event log across restarts (written on SIGTERM/SIGINT), so tests can
  stop and start the server without losing the target.

Every write is published to the event log (like an oplog) whether or not a stream is open.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import decimal
import itertools
import os
import signal
import struct
import time
import uuid

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.int64 import Int64
from bson.timestamp import Timestamp as WireTimestamp

from mongoeco.core.aggregation.stages import apply_pipeline
from mongoeco.core.bson_scalars import BsonDecimal128, BsonDouble, BsonInt32, BsonInt64
from mongoeco.core.filtering import QueryEngine
from mongoeco.core.operators import UpdateEngine
from mongoeco.core.projections import apply_projection
from mongoeco.core.sorting import sort_documents
from mongoeco.core.upserts import seed_upsert_document
from mongoeco.types import Binary, Decimal128, ObjectId
from mongoeco.wire.bson_bridge import decode_wire_value, encode_wire_value

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CODEC = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
MAX_BSON = 16 * 1024 * 1024
MAX_MESSAGE = 48_000_000


class CommandError(Exception):
    def __init__(self, code: int, message: str, codename: str = "", labels: list[str] | None = None):
        super().__init__(message)
        self.code, self.message, self.codename, self.labels = code, message, codename, labels or []

    def reply(self) -> dict:
        out = {"ok": 0.0, "errmsg": self.message, "code": self.code, "codeName": self.codename}
        if self.labels:
            out["errorLabels"] = self.labels
        return out


def id_key(value):
    """A hashable key under which equal BSON values (1, 1.0, NumberLong(1)) collide, as in MongoDB's _id index."""
    if isinstance(value, (BsonInt64, BsonInt32, BsonDouble)):
        value = value.value
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, (BsonDecimal128, Decimal128)):
        dec = value.value if isinstance(value, BsonDecimal128) else value.to_decimal()
        return ("n", dec)
    if isinstance(value, decimal.Decimal):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, ObjectId):
        return ("o", str(value))
    if isinstance(value, dict):
        return ("d", tuple((k, id_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("a", tuple(id_key(v) for v in value))
    if isinstance(value, uuid.UUID):
        return ("x", 4, value.bytes)
    if isinstance(value, Binary):
        return ("x", value.subtype, bytes(value))
    if value is None:
        return ("z",)
    return ("r", repr(value))


def id_candidates(filter_spec: dict):
    """The _id values a filter pins by equality or `$in` (a hash lookup each), else None (scan)."""
    if "_id" not in filter_spec:
        return None
    value = filter_spec["_id"]
    if isinstance(value, dict) and value and all(k.startswith("$") for k in value):
        if set(value) == {"$eq"}:
            return [value["$eq"]]
        if set(value) == {"$in"} and isinstance(value["$in"], list):
            return value["$in"]
        return None
    return [value]


class Event:
    __slots__ = ("seq", "ts", "wall", "db", "coll", "doc")

    def __init__(self, seq, ts, wall, db, coll, doc):
        self.seq, self.ts, self.wall, self.db, self.coll, self.doc = seq, ts, wall, db, coll, doc


def token_for(seq: int) -> dict:
    # Opaque to clients, as MongoDB's KeyString tokens are.
    return {"_data": "%016X" % seq}


def seq_of(token) -> int:
    if not isinstance(token, dict) or not isinstance(token.get("_data"), str):
        raise CommandError(286, "malformed resume token", "ChangeStreamHistoryLost")
    try:
        return int(token["_data"], 16)
    except ValueError:
        raise CommandError(286, "malformed resume token", "ChangeStreamHistoryLost")


class EventLog:
    """Every write, in order, with gap-free sequence numbers; the oldest fall off past `capacity` like an oplog."""

    def __init__(self, capacity: int):
        self.events: collections.deque[Event] = collections.deque()
        self.capacity = capacity
        self.last_seq = 0
        self.last_ts = (int(time.time()), 0)
        self.changed = asyncio.Condition()

    def clock(self) -> WireTimestamp:
        return WireTimestamp(*self.last_ts)

    def publish(self, db: str, coll: str, doc: dict) -> Event:
        self.last_seq += 1
        now = int(time.time())
        secs = max(now, self.last_ts[0])
        self.last_ts = (secs, self.last_seq)
        event = Event(self.last_seq, self.last_ts, datetime.datetime.now(datetime.timezone.utc), db, coll, doc)
        self.events.append(event)
        while len(self.events) > self.capacity:
            self.events.popleft()
        return event

    def oldest_seq(self) -> int:
        return self.events[0].seq if self.events else self.last_seq + 1

    async def notify(self):
        async with self.changed:
            self.changed.notify_all()


class Collection:
    def __init__(self):
        self.docs: dict = {}  # id_key -> document (mongoeco values); insertion-ordered
        self.indexes: list[dict] = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]


class Cursor:
    def __init__(self, cid: int, ns: str, items):
        self.id, self.ns, self.items = cid, ns, iter(items)


class StreamCursor:
    def __init__(self, cid, ns, db, coll, scope, next_seq, full_document, pipeline):
        self.id, self.ns, self.db, self.coll, self.scope = cid, ns, db, coll, scope
        self.next_seq, self.full_document, self.pipeline = next_seq, full_document, pipeline
        self.closed = False


class Server:
    def __init__(self, args):
        self.args = args
        self.dbs: dict[str, dict[str, Collection]] = collections.defaultdict(dict)
        self.log = EventLog(args.history)
        self.cursors: dict[int, object] = {}
        self.cursor_ids = itertools.count(1_000_000_007)
        self.conn_ids = itertools.count(1)
        self.host = f"{args.host}:{args.port}"
        if args.data and os.path.exists(args.data):
            self.load(args.data)

    # ---- persistence ------------------------------------------------------------------------------------------
    def save(self, path: str):
        """One BSON record per document and per event, streamed: no single record approaches BSON's size limit."""
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(bson.encode({"t": "meta", "last_seq": self.log.last_seq, "last_ts": WireTimestamp(*self.log.last_ts)}))
            for db, colls in self.dbs.items():
                for name, coll in colls.items():
                    f.write(bson.encode({"t": "coll", "db": db, "c": name}))
                    for doc in coll.docs.values():
                        f.write(bson.encode({"t": "doc", "db": db, "c": name, "d": encode_wire_value(doc)}))
            for e in self.log.events:
                f.write(bson.encode({"t": "event", "seq": e.seq, "ts": WireTimestamp(*e.ts), "wall": e.wall, "db": e.db,
                                     "c": e.coll, "d": encode_wire_value(e.doc)}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: str):
        with open(path, "rb") as f:
            for r in bson.decode_file_iter(f, CODEC):
                kind = r["t"]
                if kind == "doc":
                    doc = decode_wire_value(r["d"])
                    self.dbs[r["db"]].setdefault(r["c"], Collection()).docs[id_key(doc["_id"])] = doc
                elif kind == "coll":
                    self.dbs[r["db"]].setdefault(r["c"], Collection())
                elif kind == "event":
                    self.log.events.append(Event(r["seq"], (r["ts"].time, r["ts"].inc), r["wall"], r["db"], r["c"], decode_wire_value(r["d"])))
                elif kind == "meta":
                    self.log.last_seq = r["last_seq"]
                    self.log.last_ts = (r["last_ts"].time, r["last_ts"].inc)

    # ---- wire -------------------------------------------------------------------------------------------------
    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn_id = next(self.conn_ids)
        try:
            while True:
                header = await reader.readexactly(16)
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                if length < 16 or length > MAX_MESSAGE:
                    return
                payload = await reader.readexactly(length - 16)
                if opcode == OP_MSG:
                    flags = struct.unpack_from("<I", payload, 0)[0]
                    body = self.parse_msg(payload, flags)
                    reply = await self.run_command(body, conn_id)
                    if flags & 0x2:  # moreToCome: unacknowledged, no reply
                        continue
                    out = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    writer.write(struct.pack("<iiii", 16 + len(out), 0, request_id, OP_MSG) + out)
                elif opcode == OP_QUERY:
                    body = self.parse_query(payload)
                    reply = await self.run_command(body, conn_id)
                    doc = bson.encode(reply)
                    out = struct.pack("<iqii", 0, 0, 0, 1) + doc
                    writer.write(struct.pack("<iiii", 16 + len(out), 0, request_id, OP_REPLY) + out)
                else:
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    def parse_msg(payload: bytes, flags: int) -> dict:
        end = len(payload) - (4 if flags & 0x1 else 0)
        pos, body, sequences = 4, None, {}
        while pos < end:
            kind = payload[pos]
            pos += 1
            if kind == 0:
                size = struct.unpack_from("<i", payload, pos)[0]
                body = bson.decode(payload[pos:pos + size], CODEC)
                pos += size
            else:
                size = struct.unpack_from("<i", payload, pos)[0]
                section_end = pos + size
                name_end = payload.index(b"\x00", pos + 4)
                name = payload[pos + 4:name_end].decode()
                sequences[name] = bson.decode_all(payload[name_end + 1:section_end], CODEC)
                pos = section_end
        body = dict(body or {})
        body.update(sequences)
        return body

    @staticmethod
    def parse_query(payload: bytes) -> dict:
        name_end = payload.index(b"\x00", 4)
        namespace = payload[4:name_end].decode()
        pos = name_end + 1 + 8
        size = struct.unpack_from("<i", payload, pos)[0]
        body = dict(bson.decode(payload[pos:pos + size], CODEC))
        if "$query" in body:
            body = dict(body["$query"])
        body.setdefault("$db", namespace.split(".", 1)[0])
        return body

    async def run_command(self, body: dict, conn_id: int) -> dict:
        name = next(iter(body), "")
        handler = getattr(self, "cmd_" + name.lower(), None)
        try:
            if handler is None:
                raise CommandError(59, f"no such command: '{name}'", "CommandNotFound")
            result = handler(body, conn_id)
            if asyncio.iscoroutine(result):
                result = await result
        except CommandError as err:
            result = err.reply()
        except Exception as err:  # an engine error (bad operator, bad filter) is the client's error, not a crash
            result = {"ok": 0.0, "errmsg": f"{type(err).__name__}: {err}", "code": 2, "codeName": "BadValue"}
        result.setdefault("ok", 1.0)
        result["operationTime"] = self.log.clock()
        return result

    # ---- helpers ----------------------------------------------------------------------------------------------
    def coll(self, body: dict, name_field: str, create: bool = False) -> tuple[str, str, Collection | None]:
        db = body.get("$db", "test")
        name = body[name_field]
        if not isinstance(name, str) or not name:
            raise CommandError(73, f"invalid collection name for '{name_field}'", "InvalidNamespace")
        colls = self.dbs[db]
        if create and name not in colls:
            colls[name] = Collection()
        return db, name, colls.get(name)

    def matching(self, coll: Collection | None, filter_spec: dict):
        if coll is None:
            return []
        pinned = id_candidates(filter_spec)
        if pinned is not None:
            seen, candidates = set(), []
            for value in pinned:
                key = id_key(decode_wire_value(value))
                doc = coll.docs.get(key)
                if doc is not None and key not in seen:
                    seen.add(key)
                    candidates.append(doc)
        else:
            candidates = list(coll.docs.values())
        if not filter_spec:
            return candidates
        if pinned is not None and set(filter_spec) == {"_id"}:
            return candidates
        spec = decode_wire_value(filter_spec)
        return [d for d in candidates if QueryEngine.match(d, spec)]

    def cursor_reply(self, ns: str, docs, batch_size: int | None, single_batch: bool = False) -> dict:
        items = iter(docs)
        first = self.take(items, 101 if batch_size is None else batch_size)
        cid = 0
        rest = list(items)
        if rest and not single_batch:
            cid = next(self.cursor_ids)
            self.cursors[cid] = Cursor(cid, ns, rest)
        return {"cursor": {"firstBatch": first, "id": Int64(cid), "ns": ns}}

    @staticmethod
    def take(items, limit: int) -> list:
        out, size = [], 0
        for doc in items:
            raw = encode_wire_value(doc)
            out.append(raw)
            size += len(bson.encode(raw)) if len(out) % 64 == 0 else 0
            if (limit and len(out) >= limit) or size > MAX_BSON:
                break
        return out

    def publish(self, db, coll, doc):
        return self.log.publish(db, coll, doc)

    # ---- handshake and admin -----------------------------------------------------------------------------------
    def hello(self, body, conn_id, legacy: bool) -> dict:
        out = {
            "helloOk": True, "isWritablePrimary": True, "maxBsonObjectSize": MAX_BSON,
            "maxMessageSizeBytes": MAX_MESSAGE, "maxWriteBatchSize": 100000,
            "localTime": datetime.datetime.now(datetime.timezone.utc), "logicalSessionTimeoutMinutes": 30,
            "connectionId": conn_id, "minWireVersion": 0, "maxWireVersion": 17, "readOnly": False,
        }
        if legacy:
            out["ismaster"] = True
        if self.args.replset:
            out.update({"setName": self.args.replset, "hosts": [self.host], "primary": self.host,
                        "me": self.host, "setVersion": 1, "secondary": False})
        return out

    def cmd_hello(self, body, conn_id):
        return self.hello(body, conn_id, False)

    def cmd_ismaster(self, body, conn_id):
        return self.hello(body, conn_id, True)

    def cmd_ping(self, body, conn_id):
        return {}

    def cmd_buildinfo(self, body, conn_id):
        return {"version": "6.0.0", "versionArray": [6, 0, 0, 0], "gitVersion": "mongoshift-dev-mongo",
                "maxBsonObjectSize": MAX_BSON}

    def cmd_endsessions(self, body, conn_id):
        return {}

    def cmd_serverstatus(self, body, conn_id):
        return {"host": self.host, "version": "6.0.0", "process": "dev-mongo", "uptime": 1.0}

    def cmd_replsetgetstatus(self, body, conn_id):
        if not self.args.replset:
            raise CommandError(76, "not running with --replSet", "NoReplicationEnabled")
        return {"set": self.args.replset, "myState": 1,
                "members": [{"_id": 0, "name": self.host, "stateStr": "PRIMARY", "health": 1.0}]}

    def cmd_listdatabases(self, body, conn_id):
        return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": not c} for n, c in self.dbs.items()],
                "totalSize": 0}

    def cmd_listcollections(self, body, conn_id):
        db = body.get("$db", "test")
        infos = [{"name": n, "type": "collection", "options": {}, "info": {"readOnly": False}}
                 for n in self.dbs[db]]
        if body.get("filter"):
            spec = decode_wire_value(body["filter"])
            infos = [i for i in infos if QueryEngine.match(i, spec)]
        return self.cursor_reply(f"{db}.$cmd.listCollections", infos, None)

    def cmd_create(self, body, conn_id):
        db, name, coll = self.coll(body, "create")
        if coll is not None:
            raise CommandError(48, f"Collection {db}.{name} already exists.", "NamespaceExists")
        self.dbs[db][name] = Collection()
        return {}

    def cmd_createindexes(self, body, conn_id):
        db, name, coll = self.coll(body, "createIndexes", create=True)
        before = len(coll.indexes)
        for spec in body.get("indexes", []):
            if not any(i["name"] == spec["name"] for i in coll.indexes):
                coll.indexes.append(dict(spec, v=2))
        return {"numIndexesBefore": before, "numIndexesAfter": len(coll.indexes), "createdCollectionAutomatically": False}

    def cmd_listindexes(self, body, conn_id):
        db, name, coll = self.coll(body, "listIndexes")
        if coll is None:
            raise CommandError(26, f"ns does not exist: {db}.{name}", "NamespaceNotFound")
        return self.cursor_reply(f"{db}.{name}", coll.indexes, None)

    def cmd_drop(self, body, conn_id):
        db, name, coll = self.coll(body, "drop")
        if coll is None:
            return {"ns": f"{db}.{name}", "nIndexesWas": 0}
        del self.dbs[db][name]
        self.publish(db, name, {"operationType": "drop"})
        return {"ns": f"{db}.{name}", "nIndexesWas": len(coll.indexes)}

    def cmd_dropdatabase(self, body, conn_id):
        db = body.get("$db", "test")
        for name in list(self.dbs.get(db, {})):
            del self.dbs[db][name]
            self.publish(db, name, {"operationType": "drop"})
        return {"dropped": db}

    # ---- writes -----------------------------------------------------------------------------------------------
    async def cmd_insert(self, body, conn_id):
        db, name, coll = self.coll(body, "insert", create=True)
        ordered = body.get("ordered", True)
        n, errors = 0, []
        for index, raw in enumerate(body.get("documents", [])):
            doc = decode_wire_value(raw)
            if "_id" not in doc:
                doc = {"_id": ObjectId(), **doc}
            key = id_key(doc["_id"])
            if key in coll.docs:
                errors.append(self.dup_error(index, db, name, raw.get("_id", doc["_id"])))
                if ordered:
                    break
                continue
            coll.docs[key] = doc
            self.publish(db, name, {"operationType": "insert", "documentKey": {"_id": doc["_id"]}, "post": doc})
            n += 1
        await self.log.notify()
        return self.write_reply({"n": n}, errors)

    @staticmethod
    def dup_error(index, db, name, id_value) -> dict:
        return {"index": index, "code": 11000, "keyPattern": {"_id": 1}, "keyValue": {"_id": id_value},
                "errmsg": f"E11000 duplicate key error collection: {db}.{name} index: _id_ dup key: {{ _id: {id_value!r} }}"}

    @staticmethod
    def write_reply(reply: dict, errors: list) -> dict:
        if errors:
            reply["writeErrors"] = errors
        return reply

    async def cmd_update(self, body, conn_id):
        db, name, coll = self.coll(body, "update", create=True)
        ordered = body.get("ordered", True)
        n = modified = 0
        upserted, errors = [], []
        for index, spec in enumerate(body.get("updates", [])):
            try:
                matched, changed, new_id = self.apply_one_update(db, name, coll, spec)
            except CommandError as err:
                errors.append({"index": index, "code": err.code, "errmsg": err.message})
                if ordered:
                    break
                continue
            n += matched
            modified += changed
            if new_id is not None:
                upserted.append({"index": index, "_id": encode_wire_value(new_id)})
                n += 1
        await self.log.notify()
        reply = {"n": n, "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        return self.write_reply(reply, errors)

    def apply_one_update(self, db, name, coll, spec):
        filter_spec = spec.get("q", {})
        update = decode_wire_value(spec.get("u", {}))
        is_replace = isinstance(update, dict) and not any(k.startswith("$") for k in update)
        targets = self.matching(coll, filter_spec)
        if not spec.get("multi"):
            targets = targets[:1]
        changed = 0
        for doc in targets:
            if is_replace:
                new = {"_id": doc["_id"], **{k: v for k, v in update.items() if k != "_id"}}
                if "_id" in update and id_key(update["_id"]) != id_key(doc["_id"]):
                    raise CommandError(66, "the (immutable) field '_id' was found to have been altered", "ImmutableField")
            else:
                new = _deep_copy(doc)
                UpdateEngine.apply_update(new, update, selector_filter=decode_wire_value(filter_spec))
            if new != doc:
                coll.docs[id_key(doc["_id"])] = new
                op = "replace" if is_replace else "update"
                event = {"operationType": op, "documentKey": {"_id": doc["_id"]}, "post": new}
                if op == "update":
                    # Computed now, so the event log keeps no pre-image (memory).
                    event["desc"] = {"updatedFields": {k: v for k, v in new.items() if k not in doc or doc[k] != v},
                                     "removedFields": [k for k in doc if k not in new], "truncatedArrays": []}
                self.publish(db, name, event)
                changed += 1
        if targets or not spec.get("upsert"):
            return len(targets), changed, None
        new: dict = {}
        seed_upsert_document(new, decode_wire_value(filter_spec))
        if is_replace:
            new = {**({"_id": new["_id"]} if "_id" in new else {}), **update}
        else:
            UpdateEngine.apply_update(new, update, selector_filter=decode_wire_value(filter_spec), is_upsert_insert=True)
        if "_id" not in new:
            new = {"_id": ObjectId(), **new}
        else:
            new = {"_id": new["_id"], **{k: v for k, v in new.items() if k != "_id"}}
        key = id_key(new["_id"])
        if key in coll.docs:  # the filter did not match but the _id exists: MongoDB answers E11000
            err = self.dup_error(0, db, name, encode_wire_value(new["_id"]))
            raise CommandError(11000, err["errmsg"], "DuplicateKey")
        coll.docs[key] = new
        self.publish(db, name, {"operationType": "insert", "documentKey": {"_id": new["_id"]}, "post": new})
        return 0, 0, new["_id"]

    async def cmd_delete(self, body, conn_id):
        db, name, coll = self.coll(body, "delete")
        n = 0
        for spec in body.get("deletes", []):
            targets = self.matching(coll, spec.get("q", {}))
            if spec.get("limit", 0) == 1:
                targets = targets[:1]
            for doc in targets:
                del coll.docs[id_key(doc["_id"])]
                self.publish(db, name, {"operationType": "delete", "documentKey": {"_id": doc["_id"]}})
                n += 1
        await self.log.notify()
        return {"n": n}

    # ---- reads ------------------------------------------------------------------------------------------------
    def cmd_find(self, body, conn_id):
        db, name, coll = self.coll(body, "find")
        if db == "local" and name == "oplog.rs":
            return self.oplog_find(body)
        docs = self.matching(coll, body.get("filter") or {})
        sort = body.get("sort")
        if sort:
            docs = sort_documents(docs, list(sort.items()))
        skip = int(body.get("skip", 0) or 0)
        limit = abs(int(body.get("limit", 0) or 0))
        docs = docs[skip:skip + limit] if limit else docs[skip:]
        if body.get("projection"):
            proj = decode_wire_value(body["projection"])
            docs = [apply_projection(d, proj) for d in docs]
        return self.cursor_reply(f"{db}.{name}", docs, body.get("batchSize"), bool(body.get("singleBatch")))

    def oplog_find(self, body):
        # Enough of local.oplog.rs for the oplog-window check: the first and the last entry's ts.
        events = list(self.log.events)
        sort = body.get("sort") or {}
        if sort.get("$natural", 1) < 0:
            events.reverse()
        limit = abs(int(body.get("limit", 0) or 0)) or len(events)
        docs = [{"ts": WireTimestamp(*e.ts), "wall": e.wall, "op": "n"} for e in events[:limit]]
        return {"cursor": {"firstBatch": docs, "id": Int64(0), "ns": "local.oplog.rs"}}

    def cmd_count(self, body, conn_id):
        db, name, coll = self.coll(body, "count")
        return {"n": len(self.matching(coll, body.get("query") or {}))}

    def cmd_distinct(self, body, conn_id):
        db, name, coll = self.coll(body, "distinct")
        docs = self.matching(coll, body.get("query") or {})
        out = apply_pipeline(docs, [{"$group": {"_id": "$" + body["key"]}}])
        return {"values": [encode_wire_value(d["_id"]) for d in out]}

    def cmd_getmore(self, body, conn_id):
        cid = int(body["getMore"])
        cursor = self.cursors.get(cid)
        if cursor is None:
            raise CommandError(43, f"cursor id {cid} not found", "CursorNotFound", ["ResumableChangeStreamError"])
        if isinstance(cursor, StreamCursor):
            return self.stream_get_more(cursor, body)
        batch = self.take(cursor.items, int(body.get("batchSize") or 0))
        more = next(cursor.items, None)
        if more is None:
            del self.cursors[cid]
            cid = 0
        else:
            cursor.items = itertools.chain([more], cursor.items)
        return {"cursor": {"nextBatch": batch, "id": Int64(cid), "ns": cursor.ns}}

    def cmd_killcursors(self, body, conn_id):
        killed = []
        for cid in body.get("cursors", []):
            if self.cursors.pop(int(cid), None) is not None:
                killed.append(cid)
        return {"cursorsKilled": killed, "cursorsNotFound": [], "cursorsAlive": [], "cursorsUnknown": []}

    def cmd_aggregate(self, body, conn_id):
        pipeline = body.get("pipeline", [])
        if pipeline and "$changeStream" in pipeline[0]:
            return self.open_stream(body, pipeline)
        db = body.get("$db", "test")
        target = body["aggregate"]
        coll = self.dbs[db].get(target) if isinstance(target, str) else None
        docs = list(coll.docs.values()) if coll else []
        out = apply_pipeline(docs, decode_wire_value(pipeline))
        batch = (body.get("cursor") or {}).get("batchSize")
        return self.cursor_reply(f"{db}.{target}", out, batch)

    # ---- change streams ---------------------------------------------------------------------------------------
    def open_stream(self, body, pipeline):
        opts = pipeline[0]["$changeStream"]
        db = body.get("$db", "test")
        target = body["aggregate"]
        if opts.get("allChangesForCluster"):
            scope, coll = "cluster", None
        elif target == 1:
            scope, coll = "database", None
        else:
            scope, coll = "collection", target
        token = opts.get("resumeAfter") or opts.get("startAfter")
        if token is not None:
            seq = seq_of(token)
            if seq > self.log.last_seq or seq < self.log.oldest_seq() - 1:
                raise CommandError(286, "Resume of change stream was not possible, as the resume point may no "
                                        "longer be in the oplog.", "ChangeStreamHistoryLost")
            next_seq = seq + 1
        elif opts.get("startAtOperationTime") is not None:
            ts = opts["startAtOperationTime"]
            wanted = (ts.time, ts.inc)
            first = self.log.events[0].ts if self.log.events else None
            if first is not None and wanted < first and self.log.events[0].seq > 1:
                raise CommandError(286, "Resume of change stream was not possible, as the resume point may no "
                                        "longer be in the oplog.", "ChangeStreamHistoryLost")
            next_seq = next((e.seq for e in self.log.events if e.ts >= wanted), self.log.last_seq + 1)
        else:
            next_seq = self.log.last_seq + 1
        mode = opts.get("fullDocument", "default")
        rest = decode_wire_value(pipeline[1:])
        cid = next(self.cursor_ids)
        ns = f"{db}.{target if isinstance(target, str) else '$cmd.aggregate'}"
        cursor = StreamCursor(cid, ns, db, coll, scope, next_seq, mode, rest)
        self.cursors[cid] = cursor
        batch_size = (body.get("cursor") or {}).get("batchSize")
        batch = self.drain(cursor, 0 if batch_size == 0 else batch_size or 101)
        out = {"firstBatch": batch, "id": Int64(0 if cursor.closed else cid), "ns": ns,
               "postBatchResumeToken": token_for(cursor.next_seq - 1)}
        if cursor.closed:
            self.cursors.pop(cid, None)
        return {"cursor": out}

    async def stream_get_more(self, cursor: StreamCursor, body):
        limit = int(body.get("batchSize") or 1000)
        deadline = time.monotonic() + int(body.get("maxTimeMS") or 1000) / 1000.0
        if cursor.next_seq < self.log.oldest_seq():
            self.cursors.pop(cursor.id, None)
            raise CommandError(286, "change stream history lost", "ChangeStreamHistoryLost")
        batch = self.drain(cursor, limit)
        while not batch and not cursor.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            async with self.log.changed:
                try:
                    await asyncio.wait_for(self.log.changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            batch = self.drain(cursor, limit)
        cid = cursor.id
        if cursor.closed:
            self.cursors.pop(cid, None)
            cid = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cid), "ns": cursor.ns,
                           "postBatchResumeToken": token_for(cursor.next_seq - 1)}}

    def drain(self, cursor: StreamCursor, limit: int) -> list:
        out, size = [], 0
        if limit == 0 or cursor.closed:
            return out
        offset = cursor.next_seq - self.log.oldest_seq()
        for event in itertools.islice(self.log.events, max(offset, 0), None):
            cursor.next_seq = event.seq + 1
            for doc in self.render(cursor, event):
                if cursor.pipeline:
                    doc = next(iter(apply_pipeline([doc], cursor.pipeline)), None)
                    if doc is None:
                        continue
                raw = encode_wire_value(doc)
                out.append(raw)
                size += len(bson.encode(raw))
            if len(out) >= limit or size > MAX_BSON or cursor.closed:
                break
        return out

    def render(self, cursor: StreamCursor, event: Event) -> list[dict]:
        if cursor.scope != "cluster" and event.db != cursor.db:
            return []
        if cursor.scope == "collection" and event.coll != cursor.coll:
            return []
        base = {"_id": token_for(event.seq), "operationType": event.doc["operationType"],
                "clusterTime": WireTimestamp(*event.ts), "wallTime": event.wall,
                "ns": {"db": event.db, "coll": event.coll}}
        op = base["operationType"]
        if op == "drop":
            out = [base]
            if cursor.scope == "collection":
                out.append({"_id": token_for(event.seq), "operationType": "invalidate",
                            "clusterTime": WireTimestamp(*event.ts), "wallTime": event.wall})
                cursor.closed = True
            return out
        base["documentKey"] = event.doc["documentKey"]
        if op in ("insert", "replace"):
            base["fullDocument"] = event.doc["post"]
        elif op == "update":
            base["updateDescription"] = event.doc["desc"]
            if cursor.full_document in ("updateLookup", "whenAvailable", "required"):
                base["fullDocument"] = self.lookup(event)
        return [base]

    def lookup(self, event: Event):
        coll = self.dbs.get(event.db, {}).get(event.coll)
        if coll is None:
            return None
        return coll.docs.get(id_key(event.doc["documentKey"]["_id"]))


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--replset", default="", help="answer hello as the primary of this one-member replica set")
    parser.add_argument("--history", type=int, default=1_000_000, help="change events retained (the 'oplog')")
    parser.add_argument("--data", default="", help="file to load at start and write at SIGTERM/SIGINT")
    args = parser.parse_args()
    server = Server(args)
    listener = await asyncio.start_server(server.serve_connection, args.host, args.port, limit=MAX_MESSAGE)
    port = listener.sockets[0].getsockname()[1]
    server.host = f"{args.host}:{port}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    query = f"?replicaSet={args.replset}" if args.replset else "?directConnection=true"
    print(f"ready mongodb://{args.host}:{port}/{query}", flush=True)
    await stop.wait()
    # Save before closing: Server.wait_closed() would wait for every client to hang up first.
    if args.data:
        started = time.monotonic()
        try:
            server.save(args.data)
            print(f"saved {args.data} in {time.monotonic() - started:.1f} s", flush=True)
        except Exception as err:  # the log says why a restart came back empty
            print(f"save failed: {type(err).__name__}: {err}", flush=True)
            raise
    listener.close()
    listener.close_clients()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

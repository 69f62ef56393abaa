#!/usr/bin/env python3
"""mongoshift's local MongoDB dev server: for trying and testing only, never for production data.

A MongoDB wire-protocol front end (OP_MSG, plus OP_QUERY for the legacy handshake) built on mongoeco 4.11.0's
query, update, sort, projection and aggregation engines. It reports MongoDB 7.0 (buildInfo 7.0.x, maxWireVersion 21)
and adds what plain mongoeco lacks for a CDC replicator:

* storage hashed by ``_id``, so inserts and upserts that create documents cost O(1), not O(collection size), and a
  sorted ``_id`` index (merged lazily after writes), so keyset pages over ``_id`` cost O(log n + page);
* MongoDB's comparison rules, at least as strict as its documentation: query operators ``$gt/$gte/$lt/$lte`` compare
  within one BSON type bracket only (numbers with numbers, strings with strings, ...; ``$gt: MinKey`` and
  ``$lt: MaxKey`` match every type; null and missing alike), everywhere a filter is evaluated (find, count, distinct,
  update/delete filters, aggregate ``$match``); sorts (find and ``$sort``) follow the documented BSON type order
  with exact int64/double/decimal128 comparison, arrays by their smallest (ascending) or largest (descending)
  element, the empty array before null and missing; aggregation expressions still compare across types, as MongoDB's do;
* write commands as mongod takes them: at most ``maxWriteBatchSize`` (100,000) statements (else InvalidLength, 16),
  a message over ``maxMessageSizeBytes`` (48,000,000) ends the connection, a document over 16 MiB is refused per
  document (insert: BadValue 2; update: BSONObjectTooLarge 10334), and every reply is that command's own outcome
  (``n``, ``nModified``, ``upserted``, ``writeErrors`` indexed within the command), so a driver's split bulk sees
  per-batch results; ``serverStatus`` counts commands (``metrics.commands.<name>.total/failed``) and ``opcounters``;
* the ``failCommand`` fail point (``configureFailPoint`` on admin): modes alwaysOn / off / {times} / {skip} (and,
  as an extension, {skip, times}); data failCommands, errorCode, errorLabels, closeConnection, blockConnection +
  blockTimeMS, writeConcernError, appName, namespace, errorExtraInfo; the labels mongod adds by itself
  (RetryableWriteError, ResumableChangeStreamError, TransientTransactionError) unless errorLabels overrides them;
* writes a majority has not acknowledged: the ``stopReplProducer`` fail point (mongod sets it on secondaries) holds
  the inserts made while it is on — read with readConcern local, invisible to readConcern majority and to change
  streams — until it is turned off (they commit) or ``devMongoRollBack`` (admin) discards them, as a failover
  rolls back what no majority had; an insert not written with ``w: 1`` (the default is majority) gets
  writeConcernError 64 at once (mongod waits out wtimeout); other writes are refused while it is on (not modelled);
* change streams over the wire: ``aggregate`` with a leading ``$changeStream`` (collection, database and cluster
  level; resumeAfter / startAfter / startAtOperationTime; fullDocument modes), awaiting ``getMore`` honouring
  ``maxTimeMS``, ``postBatchResumeToken`` in every batch, error 286 (ChangeStreamHistoryLost) for a token outside
  the retained history, ``drop`` then ``invalidate`` on collection drop, batches of at most 16 MiB; an event over
  16 MiB fails the stream with BSONObjectTooLarge (10334) unless ``$changeStreamSplitLargeEvent`` ends the pipeline,
  which splits it into fragments (``splitEvent: {fragment, of}``) with one resume token each, resumable mid-event;
* ``operationTime`` in every reply (the cluster time of the newest event), int64 cursor ids, default batch sizes
  (101 first batch, then up to 16 MiB per getMore);
* ``--replset NAME`` so drivers see a one-member replica set primary;
* ``--data FILE`` to keep documents and the event log across restarts (written on SIGTERM/SIGINT), so tests can
  stop and start the server without losing the target.

Every write is published to the event log (like an oplog) whether or not a stream is open. docs/DEV-MONGO.md says
what it emulates, how strictly (with the test of each behaviour), and how to inject faults.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import datetime
import decimal
import gc
import itertools
import os
import signal
import struct
import time
import uuid

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.int64 import Int64
from bson.code import Code
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.timestamp import Timestamp as WireTimestamp

from mongoeco.core import sorting as mongoeco_sorting
from mongoeco.core.aggregation.stages import apply_pipeline
from mongoeco.core.bson_scalars import BsonDecimal128, BsonDouble, BsonInt32, BsonInt64
from mongoeco.core.compiled_query import CompiledQuery
from mongoeco.core.filtering import QueryEngine
from mongoeco.core.operators import UpdateEngine
from mongoeco.core.projections import apply_projection
from mongoeco.core.query_plan import compile_filter
from mongoeco.core.sorting import sort_documents
from mongoeco.core.upserts import seed_upsert_document
from mongoeco.types import Binary, Decimal128, ObjectId, Regex, Timestamp, UndefinedType
from mongoeco.wire.bson_bridge import decode_wire_value, encode_wire_value

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
CODEC = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
MAX_BSON = 16 * 1024 * 1024
MAX_MESSAGE = 48_000_000
MAX_WRITE_BATCH = 100_000
VERSION = "7.0.14"
MAX_WIRE_VERSION = 21  # MongoDB 7.0


def set_version(version: str) -> None:
    """Report `version` (buildInfo, serverStatus, hello's wire version) and behave as it where that matters."""
    global VERSION, MAX_WIRE_VERSION
    major, minor = (int(x) for x in version.split(".")[:2])
    VERSION = version
    MAX_WIRE_VERSION = {(5, 0): 13, (6, 0): 17}.get((major, minor), 21 if major >= 7 else 17)


def splits_large_events() -> bool:
    """$changeStreamSplitLargeEvent: MongoDB 7.0, backported to 6.0.9."""
    major, minor, patch = (int(x) for x in VERSION.split(".")[:3])
    return major >= 7 or (major, minor) == (6, 0) and patch >= 9


class CommandError(Exception):
    def __init__(self, code: int, message: str, codename: str = "", labels: list[str] | None = None):
        super().__init__(message)
        self.code, self.message, self.codename, self.labels = code, message, codename, labels or []

    def reply(self) -> dict:
        out = {"ok": 0.0, "errmsg": self.message, "code": self.code, "codeName": self.codename}
        if self.labels:
            out["errorLabels"] = self.labels
        return out


# ---- BSON comparison order -----------------------------------------------------------------------------------------
# MongoDB's documented order across types (MinKey < null < numbers < strings < objects < arrays < BinData < ObjectId <
# booleans < dates < timestamps < regexes < MaxKey), as canonical type ranks. A value's key is a plain tuple that
# Python orders exactly as MongoDB orders the values: (rank, payload...). Numbers keep their exact value (int, float,
# Decimal compare exactly with each other in Python), so int64 vs double vs decimal128 is precise; NaN sorts below
# every other number, as in MongoDB.
R_MINKEY, R_UNDEFINED, R_NULL, R_NUMBER, R_STRING, R_OBJECT, R_ARRAY = -1, 0, 5, 10, 15, 20, 25
R_BINARY, R_OBJECTID, R_BOOL, R_DATE, R_TIMESTAMP, R_REGEX, R_CODE, R_CODE_SCOPE, R_MAXKEY = 30, 35, 40, 45, 47, 50, 60, 65, 127

MISSING = UndefinedType()  # a path that does not exist: MongoDB's matcher sees it as EOO, ranked with undefined
EMPTY_ARRAY_SORT_KEY = (R_UNDEFINED,)  # an empty array sorts before null and missing (documented)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MS = datetime.timedelta(milliseconds=1)


def _number_key(value) -> tuple:
    if value.is_nan() if isinstance(value, decimal.Decimal) else value != value:  # NaN (and decimal sNaN)
        return (R_NUMBER, 0)
    return (R_NUMBER, 1, value)


def _date_ms(value: datetime.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return (value - _EPOCH) // _MS


def _key_int(v): return (R_NUMBER, 1, v)
def _key_float(v): return _number_key(v)
def _key_wrapped(v): return _number_key(v.value)
def _key_decimal(v): return _number_key(v.to_decimal())
def _key_pydecimal(v): return _number_key(v)
def _key_str(v): return (R_STRING, v)
def _key_none(v): return (R_NULL,)
def _key_bool(v): return (R_BOOL, v)
def _key_bytes(v): return (R_BINARY, len(v), 0, bytes(v))
def _key_binary(v): return (R_BINARY, len(v), v.subtype, bytes(v))
def _key_uuid(v): return (R_BINARY, 16, 4, v.bytes)
def _key_oid(v): return (R_OBJECTID, v.binary)
def _key_date(v): return (R_DATE, _date_ms(v))
def _key_datems(v): return (R_DATE, int(v))
def _key_ts(v): return (R_TIMESTAMP, v.time, v.inc)
def _key_regex(v): return (R_REGEX, v.pattern, v.flags)
def _key_minkey(v): return (R_MINKEY,)
def _key_maxkey(v): return (R_MAXKEY,)
def _key_undefined(v): return (R_UNDEFINED,)


def _key_code(v):
    if v.scope is None:
        return (R_CODE, str(v))
    return (R_CODE_SCOPE, str(v), bson_key(dict(v.scope)))


def _key_dict(v):
    # Field by field: the value's type, then the field name, then the value; a shorter object is smaller.
    out = []
    for name, item in v.items():
        k = bson_key(item)
        out.append((k[0], name, k))
    return (R_OBJECT, tuple(out))


def _key_list(v):
    return (R_ARRAY, tuple(bson_key(item) for item in v))


_KEYERS = {
    int: _key_int, float: _key_float, str: _key_str, type(None): _key_none, bool: _key_bool, dict: _key_dict,
    list: _key_list, bytes: _key_bytes, Binary: _key_binary, uuid.UUID: _key_uuid, ObjectId: _key_oid,
    datetime.datetime: _key_date, bson.DatetimeMS: _key_datems, Timestamp: _key_ts, WireTimestamp: _key_ts,
    Regex: _key_regex, MinKey: _key_minkey, MaxKey: _key_maxkey, UndefinedType: _key_undefined, Code: _key_code,
    BsonInt64: _key_wrapped, BsonInt32: _key_wrapped, BsonDouble: _key_wrapped, BsonDecimal128: _key_wrapped,
    Decimal128: _key_decimal, decimal.Decimal: _key_pydecimal, bson.Decimal128: _key_decimal,
    bson.ObjectId: lambda v: (R_OBJECTID, v.binary), bson.Int64: _key_int,
}


def index_keys(doc, index) -> set:
    """The keys `doc` has in a secondary index: tuples of bson_key per field (empty: a sparse index skips it)."""
    per_field = []
    for field in index["key"]:
        values = [v for v in path_values(doc, field) if not isinstance(v, list)]
        per_field.append(values)
    if index.get("sparse") and all(v == [MISSING] for v in per_field):
        return set()
    keys = {()}
    for values in per_field:
        keys = {k + (bson_key(None if v is MISSING else v),) for k in keys for v in values or [MISSING]}
    return keys


def first_value(doc, field):
    values = path_values(doc, field)
    return None if values[0] is MISSING else values[0]


def bson_key(value) -> tuple:
    """A tuple ordered (and equal, and hashed) exactly as MongoDB compares the BSON value."""
    keyer = _KEYERS.get(type(value))
    if keyer is not None:
        return keyer(value)
    for cls, keyer in _KEYERS.items():  # subclasses (e.g. a tz-aware datetime subclass)
        if isinstance(value, cls) and cls is not int:
            return keyer(value)
    if isinstance(value, dict):
        return _key_dict(value)
    return (200, repr(value))


# The _id index key: equal BSON values (1, 1.0, NumberLong(1), NumberDecimal("1.0")) collide, as in MongoDB.
id_key = bson_key


def path_values(doc, path: str) -> list:
    """The values a query path reaches, as MongoDB's matcher iterates them: arrays on the way are traversed, an array
    at the end yields its elements and then itself, and a path that reaches nothing yields MISSING."""
    out: list = []
    _walk(doc, path.split("."), 0, out)
    return out or [MISSING]


def _walk(value, parts, i, out):
    if i == len(parts):
        if isinstance(value, list):
            out.extend(value)
        out.append(value)
        return
    part = parts[i]
    if isinstance(value, dict):
        if part in value:
            _walk(value[part], parts, i + 1, out)
    elif isinstance(value, list):
        if part.isdigit() and int(part) < len(value):
            _walk(value[int(part)], parts, i + 1, out)
        for item in value:
            if isinstance(item, dict):
                _walk(item, parts, i, out)


def query_compare(value, target, op: str) -> bool:
    """One candidate against a $gt/$gte/$lt/$lte operand, with MongoDB's type bracketing: values of another canonical
    type never match, except null/missing (which `$gte: null` and `$lte: null` match) and the MinKey/MaxKey operands
    (`$gt(e): MinKey` and `$lt(e): MaxKey` match every type)."""
    kv, kt = bson_key(value), bson_key(target)
    rv, rt = kv[0], kt[0]
    if rv != rt:
        if rv + rt == R_NULL and R_UNDEFINED in (rv, rt):
            return op in ("gte", "lte")
        if rt == R_MAXKEY:
            return op in ("lt", "lte")
        if rt == R_MINKEY:
            return op in ("gt", "gte")
        return False
    if rv == R_NUMBER and (kv[1] == 0 or kt[1] == 0):  # NaN equals NaN only, and is neither < nor > anything
        return kv[1] == kt[1] == 0 and op in ("gte", "lte")
    if op == "gt":
        return kv > kt
    if op == "gte":
        return kv >= kt
    if op == "lt":
        return kv < kt
    return kv <= kt


def sort_key(doc, path: str, direction: int) -> tuple:
    """A document's sort key for one field: the smallest element of an array ascending, the largest descending; missing
    sorts as null, an empty array before null (documented)."""
    if "." not in path:
        value = doc.get(path, None) if isinstance(doc, dict) else None
        if not isinstance(value, list):
            return bson_key(value)
        candidates = value
    else:
        candidates = []
        _sort_walk(doc, path.split("."), 0, candidates)
        if not candidates:
            return (R_NULL,)
    if not candidates:
        return EMPTY_ARRAY_SORT_KEY
    keys = [EMPTY_ARRAY_SORT_KEY if c is _EMPTY_LEAF else bson_key(c) for c in candidates]
    return min(keys) if direction == 1 else max(keys)


_EMPTY_LEAF = object()


def _sort_walk(value, parts, i, out):
    if i == len(parts):
        if isinstance(value, list):
            if value:
                out.extend(value)
            else:
                out.append(_EMPTY_LEAF)
        else:
            out.append(value)
        return
    part = parts[i]
    if isinstance(value, dict):
        _sort_walk(value.get(part), parts, i + 1, out) if part in value else out.append(None)
    elif isinstance(value, list):
        if part.isdigit():
            if int(part) < len(value):
                _sort_walk(value[int(part)], parts, i + 1, out)
            else:
                out.append(None)
            return
        if not value:
            out.append(None)
        for item in value:
            if isinstance(item, dict):
                _sort_walk(item.get(part), parts, i + 1, out) if part in item else out.append(None)
            else:
                out.append(None)
    else:
        out.append(None)


def simple_sort_spec(sort) -> list[tuple[str, int]] | None:
    """[(path, ±1), ...] for a plain ascending/descending sort, else None ($meta and friends are left to mongoeco)."""
    items = list(sort.items()) if isinstance(sort, dict) else list(sort or [])
    out = []
    for path, direction in items:
        if isinstance(direction, bool) or not isinstance(direction, (int, float, Int64)) or direction not in (1, -1):
            return None
        out.append((path, int(direction)))
    return out


def sort_docs(docs: list, spec: list[tuple[str, int]]) -> list:
    """MongoDB's sort order; ties keep natural (insertion) order. Stable sorts from the last key to the first."""
    docs = list(docs)
    for path, direction in reversed(spec):
        keys = {id(d): sort_key(d, path, direction) for d in docs}
        docs.sort(key=lambda d: keys[id(d)], reverse=direction == -1)
    return docs


def install_strict_semantics() -> None:
    """Route mongoeco's query comparisons and sort keys through MongoDB's documented rules (above). Aggregation
    expressions ($expr, $cmp, $max, ...) keep comparing across types, as MongoDB's expressions do."""

    def evaluate_comparison(doc, field, target, operator, *, dialect=None, collation=None):
        if collation is not None:
            return _original_comparison(doc, field, target, operator, dialect=dialect, collation=collation)
        return any(query_compare(v, target, operator) for v in path_values(doc, field))

    def compiled_match(self, document, *, variables=None):
        # The compiled fast path inlines its own (cross-type) comparisons: use the plan interpreter instead.
        return QueryEngine.match_plan(document, self.plan, dialect=self.dialect, collation=self.collation,
                                      variables=variables)

    def sort_value(document, field, direction, *, dialect=None, collation=None):
        return sort_key(document, field, direction)

    def compare_sort_values(left, right, *, dialect=None, collation=None):
        return (left > right) - (left < right)

    def matches_bson_type(cls, candidate, alias):
        # bson's Code subclasses str, and mongoeco took it for a string: MongoDB's "string" is type 2 only
        # (JavaScript code is 13, with scope 15), so {$type: "string"} must not return code.
        if alias == "string" and isinstance(candidate, Code):
            return False
        return _original_matches_type(cls, candidate, alias)

    _original_comparison = QueryEngine._evaluate_comparison
    QueryEngine._evaluate_comparison = staticmethod(evaluate_comparison)
    _original_matches_type = QueryEngine._matches_bson_type.__func__
    QueryEngine._matches_bson_type = classmethod(matches_bson_type)
    CompiledQuery.match = compiled_match
    mongoeco_sorting.sort_value = sort_value
    mongoeco_sorting._compare_sort_values = compare_sort_values


install_strict_semantics()


def compile_query(spec: dict):
    """A filter compiled once (a predicate over documents), or None for the empty filter."""
    if not spec:
        return None
    plan = compile_filter(spec)
    return lambda doc: QueryEngine.match_plan(doc, plan)


_RANGE_OPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}


def id_range(filter_spec: dict):
    """(lo, lo_inclusive, hi, hi_inclusive) in bson_key space for an `_id` condition made only of $gt/$gte/$lt/$lte
    (type bracketing applied: the range never leaves the operand's type), else None. `_id` absent: the whole range."""
    if "_id" not in filter_spec:
        return ((R_MINKEY - 1,), True, (R_MAXKEY + 1,), True)
    cond = filter_spec["_id"]
    if not isinstance(cond, dict) or not cond or not set(cond) <= set(_RANGE_OPS):
        return None
    lo, lo_inc, hi, hi_inc = (R_MINKEY - 1,), True, (R_MAXKEY + 1,), True
    for op, operand in cond.items():
        k = bson_key(decode_wire_value(operand))
        rank = k[0]
        if rank == R_NUMBER and k[1] == 0:
            return None  # NaN operands: the scan handles them
        kind = _RANGE_OPS[op]
        if rank == R_MINKEY:
            b_lo, b_hi = ((R_MINKEY - 1,), (R_MAXKEY + 1,)) if kind in ("gt", "gte") else ((R_MINKEY,), (R_MINKEY,))
        elif rank == R_MAXKEY:
            b_lo, b_hi = ((R_MINKEY - 1,), (R_MAXKEY + 1,)) if kind in ("lt", "lte") else ((R_MAXKEY,), (R_MAXKEY,))
        else:
            b_lo = (rank, 1) if rank == R_NUMBER else (rank,)  # NaN never satisfies a range
            b_hi = (rank + 0.5,)
        if b_lo > lo:
            lo, lo_inc = b_lo, True
        if b_hi < hi:
            hi, hi_inc = b_hi, True
        if kind in ("gt", "gte"):
            if k > lo or (k == lo and kind == "gt"):
                lo, lo_inc = k, kind == "gte"
        else:
            if k < hi or (k == hi and kind == "lt"):
                hi, hi_inc = k, kind == "lte"
    return lo, lo_inc, hi, hi_inc


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


def token_for(seq: int, fragment: int = 0) -> dict:
    # Opaque to clients, as MongoDB's KeyString tokens are. A fragment of a split event carries its number after the
    # event's position, so tokens still order as the stream does.
    return {"_data": "%016X" % seq if not fragment else "%016X%04X" % (seq, fragment)}


# The position of a collection stream's `invalidate` after the `drop` of the same oplog entry: MongoDB gives it a
# token of its own, after the drop's. Resuming after the drop delivers the invalidate again; only `startAfter` the
# invalidate's token continues past it (`resumeAfter` it is refused, code 260).
INVALIDATE = 0xFFFF


def position_of(token) -> tuple[int, int]:
    """(event sequence number, fragment number: 0 for a whole event, INVALIDATE for the invalidate after a drop)."""
    data = token.get("_data") if isinstance(token, dict) else None
    if not isinstance(data, str) or len(data) not in (16, 20):
        raise CommandError(286, "malformed resume token", "ChangeStreamHistoryLost")
    try:
        return int(data[:16], 16), int(data[16:] or "0", 16)
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
    """Documents hashed by `_id` (O(1) inserts and upserts) plus a sorted `_id` index, built on the first range query
    and kept up to date lazily: writes only queue their keys, the next range query merges them (O(n) with timsort),
    so keyset pagination over `_id` costs O(log n + page) per page instead of a scan and a sort."""

    def __init__(self, collection_uuid: uuid.UUID | None = None):
        self.uuid = collection_uuid or uuid.uuid4()  # the collection's identity: a new one when it is made again
        self.docs: dict = {}  # id_key -> document (mongoeco values); insertion-ordered
        self.indexes: list[dict] = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
        self.sizes: dict = {}  # id_key -> upper bound of the document's BSON size (absent: unknown)
        self._keys: list | None = None  # sorted id_keys (id_key is bson_key: ordered as MongoDB orders _id)
        self._added: list = []
        self._removed: set = set()

    def put(self, key, doc) -> None:
        if self._keys is not None and key not in self.docs:
            if key in self._removed:
                self._removed.discard(key)  # its old index entry is still in place
            else:
                self._added.append(key)
        self.docs[key] = doc

    def unique_conflict(self, key, doc):
        """The first unique secondary index `doc`, stored under `key`, would break: (index, values) or None.
        As mongod: a missing field is null unless the index is sparse, array elements are keys each, equal BSON
        values (1, 1.0) collide. A scan of the collection: dev-mongo's collections are small."""
        for index in self.indexes:
            if not index.get("unique") or index["name"] == "_id_":
                continue
            mine = index_keys(doc, index)
            if not mine:
                continue
            for other_key, other in self.docs.items():
                if other_key != key and mine & index_keys(other, index):
                    return index, [first_value(doc, f) for f in index["key"]]
        return None

    def remove(self, key) -> None:
        del self.docs[key]
        self.sizes.pop(key, None)
        if self._keys is not None:
            self._removed.add(key)

    def sorted_keys(self) -> list:
        if self._keys is None:
            self._keys = sorted(self.docs)
        elif self._added or self._removed:
            docs = self.docs
            keys = [k for k in self._keys if k in docs] if self._removed else self._keys
            if self._added:
                keys.extend(k for k in dict.fromkeys(self._added) if k in docs)
                keys.sort()
            self._keys, self._added, self._removed = keys, [], set()
        return self._keys

    def range(self, lo, lo_inc, hi, hi_inc, descending: bool):
        keys = self.sorted_keys()
        start = bisect.bisect_left(keys, lo) if lo_inc else bisect.bisect_right(keys, lo)
        end = bisect.bisect_right(keys, hi) if hi_inc else bisect.bisect_left(keys, hi)
        docs = self.docs
        indexes = range(end - 1, start - 1, -1) if descending else range(start, end)
        for i in indexes:
            doc = docs.get(keys[i])
            if doc is not None:
                yield doc


class Cursor:
    def __init__(self, cid: int, ns: str, items):
        self.id, self.ns, self.items = cid, ns, iter(items)


class StreamCursor:
    def __init__(self, cid, ns, db, coll, scope, next_seq, full_document, pipeline, split, pos):
        self.id, self.ns, self.db, self.coll, self.scope = cid, ns, db, coll, scope
        self.next_seq, self.full_document, self.pipeline = next_seq, full_document, pipeline
        self.split = split  # $changeStreamSplitLargeEvent was the pipeline's last stage
        self.pending: collections.deque = collections.deque()  # rendered (raw, size, position) not yet returned
        self.skip_fragments = 0  # resumed from a fragment token: fragments of the first event already seen
        self.pos = pos  # (seq, fragment) of the last event returned or passed over: the postBatchResumeToken
        self.closed = False
        self.close_when_drained = False  # resumed after a drop: its invalidate is pending, then the stream ends


# ---- fail points ---------------------------------------------------------------------------------------------------
CODE_NAMES = {
    1: "InternalError", 2: "BadValue", 6: "HostUnreachable", 7: "HostNotFound", 11: "UserNotFound", 13: "Unauthorized",
    16: "InvalidLength", 18: "AuthenticationFailed", 24: "LockTimeout", 26: "NamespaceNotFound", 43: "CursorNotFound",
    46: "LockBusy", 50: "MaxTimeMSExpired", 59: "CommandNotFound", 63: "StaleShardVersion", 64: "WriteConcernFailed",
    72: "InvalidOptions", 89: "NetworkTimeout", 91: "ShutdownInProgress", 96: "OperationFailed", 112: "WriteConflict",
    133: "FailedToSatisfyReadPreference", 134: "ReadConcernMajorityNotAvailableYet", 150: "StaleEpoch",
    175: "QueryPlanKilled", 189: "PrimarySteppedDown", 234: "RetryChangeStream", 251: "NoSuchTransaction",
    262: "ExceededTimeLimit", 280: "ChangeStreamFatalError", 286: "ChangeStreamHistoryLost", 9001: "SocketException",
    10107: "NotWritablePrimary", 10334: "BSONObjectTooLarge", 11000: "DuplicateKey", 11600: "InterruptedAtShutdown",
    11601: "Interrupted", 11602: "InterruptedDueToReplStateChange", 13388: "StaleConfig", 13435: "NotPrimaryNoSecondaryOk",
    13436: "NotPrimaryOrSecondary", 50915: "BackupCursorOpenConflictWithCheckpoint",
}
# Codes for which MongoDB (4.4+) labels a retryable write's error RetryableWriteError.
RETRYABLE_WRITE_CODES = {6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
# Codes for which it labels a change stream's error ResumableChangeStreamError (the change streams spec's list).
RESUMABLE_STREAM_CODES = RETRYABLE_WRITE_CODES | {43, 63, 133, 150, 234, 13388}
# Codes a transaction's statement is labelled TransientTransactionError with.
TRANSIENT_TXN_CODES = RETRYABLE_WRITE_CODES | {24, 46, 112, 251}
# Command aliases: failCommands matches any name of the command (as mongod's Command::hasAlias does).
ALIASES = [{"hello", "isMaster", "ismaster"}, {"buildInfo", "buildinfo"}, {"dropIndexes", "deleteIndexes"}]
WRITE_CONCERN_COMMANDS = {"insert", "update", "delete", "findAndModify", "findandmodify", "create", "drop",
                          "dropDatabase", "createIndexes", "dropIndexes", "collMod", "renameCollection",
                          "commitTransaction", "abortTransaction"}
RETRYABLE_WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "findandmodify"}
# Writes whose held (unreplicated) form dev-mongo does not model: refused while stopReplProducer is on.
UNMODELLED_WHILE_UNREPLICATED = {"update", "delete", "findandmodify", "drop", "dropdatabase", "renamecollection", "create",
                                 "createindexes", "dropindexes", "collmod"}


class DropConnection(Exception):
    """closeConnection: end the connection without a reply."""


class FailPoint:
    """mongod's `failCommand` fail point (configureFailPoint, test commands): which commands it matches, how many
    times it fires (mode), and what it does (data)."""

    def __init__(self):
        self.mode, self.times, self.skip, self.data, self.entered = "off", 0, 0, {}, 0

    def configure(self, mode, data) -> int:
        previous = self.entered
        if mode == "off":
            self.mode = "off"
        elif mode == "alwaysOn":
            self.mode, self.times, self.skip = "on", 0, 0
        elif isinstance(mode, dict) and mode and set(mode) <= {"times", "skip"}:
            times, skip = mode.get("times"), mode.get("skip", 0)
            for name, n in (("times", times), ("skip", skip)):
                if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                    raise CommandError(2, f"'{name}' must be a non-negative integer", "BadValue")
            # mongod takes `times` or `skip`; both together (skip n matching commands, then fire `times` times) is this
            # server's extension, so a test can fail exactly the second batch of a split bulk.
            self.mode = "times" if times is not None else "on"
            self.times, self.skip = int(times or 0), int(skip)
            if self.mode == "times" and self.times == 0:
                self.mode = "off"
        else:
            raise CommandError(2, "mode must be 'alwaysOn', 'off', or an object {times: n} / {skip: n}", "BadValue")
        if self.mode != "off":
            if not isinstance(data, dict):
                raise CommandError(2, "'data' must be an object", "BadValue")
            commands = data.get("failCommands")
            if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
                raise CommandError(2, "'failCommands' must be an array of command names", "BadValue")
            if data.get("blockConnection") and not isinstance(data.get("blockTimeMS"), int):
                raise CommandError(72, "must specify 'blockTimeMS' when 'blockConnection' is true", "InvalidOptions")
            if data.get("blockConnection") and data["blockTimeMS"] < 0:
                raise CommandError(72, "'blockTimeMS' must be non-negative", "InvalidOptions")
            self.data = dict(data)
        return previous  # mongod's reply: how many times the fail point has fired so far


    def fires(self, name: str, body: dict, app_name: str | None) -> dict | None:
        """The fail point's data when it fires for this command (counting it), else None."""
        if self.mode == "off" or name in ("configureFailPoint", "configurefailpoint"):
            return None
        data = self.data
        wanted = data.get("failCommands", [])
        if name not in wanted and not any(name in group and group & set(wanted) for group in ALIASES):
            return None
        if "appName" in data and data["appName"] != app_name:
            return None
        if "namespace" in data:
            target = body.get(name)
            if not isinstance(target, str) or f"{body.get('$db', 'test')}.{target}" != data["namespace"]:
                return None
        acts = data.get("closeConnection") or "errorCode" in data or data.get("blockConnection") or \
            ("writeConcernError" in data and name in WRITE_CONCERN_COMMANDS)
        if not acts:
            return None
        if self.skip > 0:
            self.skip -= 1
            return None
        self.entered += 1
        if self.mode == "times":
            self.times -= 1
            if self.times <= 0:
                self.mode = "off"
        return data


class Connection:
    def __init__(self, cid: int, writer):
        self.id, self.writer, self.app_name = cid, writer, None


class Server:
    def __init__(self, args):
        self.args = args
        self.dbs: dict[str, dict[str, Collection]] = collections.defaultdict(dict)
        self.log = EventLog(args.history)
        self.cursors: dict[int, object] = {}
        self.cursor_ids = itertools.count(1_000_000_007)
        self.conn_ids = itertools.count(1)
        self.host = f"{args.host}:{args.port}"
        self.fail_point = FailPoint()
        # stopReplProducer: inserts no majority has acknowledged (namespace, id key, event), in order; None when off.
        self.unreplicated: list | None = None
        self.started = time.monotonic()
        # serverStatus: opcounters as mongod counts them (documents inserted, statements updated/deleted, ...) and
        # metrics.commands.<name>.{total, failed}: one per command received, so tests can count a driver's batches.
        self.opcounters = {k: 0 for k in ("insert", "query", "update", "delete", "getmore", "command")}
        self.command_counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
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
                    f.write(bson.encode({"t": "coll", "db": db, "c": name, "uuid": bson.Binary(coll.uuid.bytes, 4)}))
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
                    saved = r.get("uuid")
                    self.dbs[r["db"]].setdefault(r["c"], Collection(uuid.UUID(bytes=bytes(saved)) if saved else None))
                elif kind == "event":
                    self.log.events.append(Event(r["seq"], (r["ts"].time, r["ts"].inc), r["wall"], r["db"], r["c"], decode_wire_value(r["d"])))
                elif kind == "meta":
                    self.log.last_seq = r["last_seq"]
                    self.log.last_ts = (r["last_ts"].time, r["last_ts"].inc)

    # ---- wire -------------------------------------------------------------------------------------------------
    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn = Connection(next(self.conn_ids), writer)
        try:
            while True:
                header = await reader.readexactly(16)
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                if length < 16 or length > MAX_MESSAGE:
                    return  # mongod too ends the connection on a message over maxMessageSizeBytes
                payload = await reader.readexactly(length - 16)
                if opcode == OP_MSG:
                    flags = struct.unpack_from("<I", payload, 0)[0]
                    body = self.parse_msg(payload, flags)
                    reply = await self.run_command(body, conn)
                    if flags & 0x2:  # moreToCome: unacknowledged, no reply
                        continue
                    out = struct.pack("<I", 0) + b"\x00" + bson.encode(reply)
                    writer.write(struct.pack("<iiii", 16 + len(out), 0, request_id, OP_MSG) + out)
                elif opcode == OP_QUERY:
                    body = self.parse_query(payload)
                    reply = await self.run_command(body, conn)
                    doc = bson.encode(reply)
                    out = struct.pack("<iqii", 0, 0, 0, 1) + doc
                    writer.write(struct.pack("<iiii", 16 + len(out), 0, request_id, OP_REPLY) + out)
                else:
                    return
                await writer.drain()
        except DropConnection:
            writer.transport.abort()
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

    async def run_command(self, body: dict, conn: Connection) -> dict:
        name = next(iter(body), "")
        handler = getattr(self, "cmd_" + name.lower(), None)
        counts = self.command_counts[name if handler else "<UNKNOWN>"]
        counts[0] += 1
        if name.lower() in ("hello", "ismaster") and conn.app_name is None:
            conn.app_name = ((body.get("client") or {}).get("application") or {}).get("name")
        fail = self.fail_point.fires(name, body, conn.app_name)
        try:
            if fail is not None:
                if fail.get("blockConnection"):
                    await asyncio.sleep(fail["blockTimeMS"] / 1000.0)
                if fail.get("closeConnection"):
                    raise DropConnection()
                if "errorCode" in fail:
                    code = int(fail["errorCode"])
                    err = CommandError(code, "Failing command via 'failCommand' failpoint", CODE_NAMES.get(code, ""))
                    err.extra = dict(fail.get("errorExtraInfo") or {})
                    raise err
            if handler is None:
                raise CommandError(59, f"no such command: '{name}'", "CommandNotFound")
            if self.unreplicated is not None and name.lower() in UNMODELLED_WHILE_UNREPLICATED:
                raise CommandError(2, f"dev-mongo models only inserts while stopReplProducer is on, not {name}", "BadValue")
            result = handler(body, conn)
            if asyncio.iscoroutine(result):
                result = await result
        except CommandError as err:
            result = err.reply()
            result.update(getattr(err, "extra", {}))
            labels = err.labels or self.error_labels(name, body, err.code)
            if labels:
                result["errorLabels"] = labels
            else:
                result.pop("errorLabels", None)
        except DropConnection:
            raise
        except Exception as err:  # an engine error (bad operator, bad filter) is the client's error, not a crash
            result = {"ok": 0.0, "errmsg": f"{type(err).__name__}: {err}", "code": 2, "codeName": "BadValue"}
        if fail is not None and "errorLabels" in fail and "errorCode" in fail:
            result.pop("errorLabels", None)  # the fail point's labels replace the server's own (an empty list: none)
            if fail["errorLabels"]:
                result["errorLabels"] = list(fail["errorLabels"])
        if fail is not None and "writeConcernError" in fail and "errorCode" not in fail:
            result["writeConcernError"] = dict(fail["writeConcernError"])
            labels = fail["errorLabels"] if "errorLabels" in fail else \
                self.error_labels(name, body, int(fail["writeConcernError"].get("code", 0)), write_concern=True)
            if labels:
                result["errorLabels"] = list(labels)
        result.setdefault("ok", 1.0)
        if not result["ok"]:
            counts[1] += 1
        result["operationTime"] = self.log.clock()
        return result

    def error_labels(self, name: str, body: dict, code: int, write_concern: bool = False) -> list[str]:
        """The labels mongod (4.4+) attaches to an error reply by itself."""
        labels = []
        in_txn = body.get("autocommit") is False
        if in_txn and code in TRANSIENT_TXN_CODES and not write_concern:
            labels.append("TransientTransactionError")
        if not in_txn and "txnNumber" in body and name in RETRYABLE_WRITE_COMMANDS and code in RETRYABLE_WRITE_CODES:
            labels.append("RetryableWriteError")
        if code in RESUMABLE_STREAM_CODES and self.is_stream_command(name, body):
            labels.append("ResumableChangeStreamError")
        return labels

    def is_stream_command(self, name: str, body: dict) -> bool:
        if name == "getMore":
            return isinstance(self.cursors.get(int(body.get("getMore") or 0)), StreamCursor)
        if name == "aggregate":
            pipeline = body.get("pipeline") or []
            return bool(pipeline) and isinstance(pipeline[0], dict) and "$changeStream" in pipeline[0]
        return False

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

    def select(self, coll: Collection | None, filter_spec: dict, sort=None, skip: int = 0, limit: int = 0) -> list:
        """The documents a filter matches, sorted, skipped and limited, as MongoDB would return them. An `_id` pinned by
        equality or $in is a hash lookup; an `_id` range (or no `_id` condition) sorted by `_id` or not sorted walks the
        sorted `_id` index; anything else scans and sorts."""
        if coll is None:
            return []
        filter_spec = filter_spec or {}
        spec = simple_sort_spec(sort) if sort else []
        pinned = id_candidates(filter_spec)
        if pinned is not None:
            seen, candidates = set(), []
            for value in pinned:
                key = id_key(decode_wire_value(value))
                doc = coll.docs.get(key)
                if doc is not None and key not in seen:
                    seen.add(key)
                    candidates.append(doc)
            if set(filter_spec) != {"_id"}:
                match = compile_query(decode_wire_value(filter_spec))
                candidates = [d for d in candidates if match(d)]
            return self.order(candidates, sort, spec, skip, limit)
        rng = id_range(filter_spec) if spec is not None and (not spec or (len(spec) == 1 and spec[0][0] == "_id")) \
            else None
        if rng is not None and ("_id" in filter_spec or spec):
            rest = {k: v for k, v in filter_spec.items() if k != "_id"}
            match = compile_query(decode_wire_value(rest)) if rest else None
            out, to_skip = [], skip
            for doc in coll.range(*rng, descending=bool(spec) and spec[0][1] == -1):
                if match is not None and not match(doc):
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                out.append(doc)
                if limit and len(out) >= limit:
                    break
            return out
        match = compile_query(decode_wire_value(filter_spec))
        if match is None:
            candidates = list(coll.docs.values())
        elif not sort and limit:  # no order asked: natural order, and the scan stops at the limit
            candidates = list(itertools.islice((d for d in coll.docs.values() if match(d)), skip + limit))
        else:
            candidates = [d for d in coll.docs.values() if match(d)]
        return self.order(candidates, sort, spec, skip, limit)

    @staticmethod
    def order(docs: list, sort, spec, skip: int, limit: int) -> list:
        if spec and spec[0][0] == "$natural":
            docs = docs if spec[0][1] == 1 else list(reversed(docs))
        elif sort:
            docs = sort_docs(docs, spec) if spec is not None else sort_documents(docs, list(sort.items()))
        return docs[skip:skip + limit] if limit else docs[skip:]

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
        if self.unreplicated is not None:
            if doc.get("operationType") != "insert":
                raise CommandError(2, "dev-mongo models only inserts while stopReplProducer is on", "BadValue")
            self.unreplicated.append(((db, coll), id_key(doc["documentKey"]["_id"]), doc))
            return None
        return self.log.publish(db, coll, doc)

    # ---- handshake and admin -----------------------------------------------------------------------------------
    def hello(self, body, conn, legacy: bool) -> dict:
        out = {
            "helloOk": True, "isWritablePrimary": True, "maxBsonObjectSize": MAX_BSON,
            "maxMessageSizeBytes": MAX_MESSAGE, "maxWriteBatchSize": MAX_WRITE_BATCH,
            "localTime": datetime.datetime.now(datetime.timezone.utc), "logicalSessionTimeoutMinutes": 30,
            "connectionId": conn.id, "minWireVersion": 0, "maxWireVersion": MAX_WIRE_VERSION, "readOnly": False,
        }
        if legacy:
            out["ismaster"] = True
        if self.args.replset:
            out.update({"setName": self.args.replset, "hosts": [self.host], "primary": self.host,
                        "me": self.host, "setVersion": 1, "secondary": False})
        return out

    def cmd_hello(self, body, conn):
        return self.hello(body, conn, False)

    def cmd_ismaster(self, body, conn):
        return self.hello(body, conn, True)

    def cmd_ping(self, body, conn):
        return {}

    # Authentication: the server has no users, and mongod answers a login for a user it does not know with 18
    # AuthenticationFailed ("UserNotFound" is never disclosed) — so every login fails, as it would there.
    def cmd_saslstart(self, body, conn):
        raise CommandError(18, "Authentication failed.", "AuthenticationFailed")

    def cmd_authenticate(self, body, conn):
        raise CommandError(18, "Authentication failed.", "AuthenticationFailed")

    def cmd_buildinfo(self, body, conn):
        major, minor, patch = (int(x) for x in VERSION.split("."))
        return {"version": VERSION, "versionArray": [major, minor, patch, 0], "gitVersion": "mongoshift-dev-mongo",
                "maxBsonObjectSize": MAX_BSON, "storageEngines": ["devmongo"], "modules": [], "bits": 64}

    def cmd_endsessions(self, body, conn):
        return {}

    def cmd_serverstatus(self, body, conn):
        return {"host": self.host, "version": VERSION, "process": "dev-mongo",
                "uptime": float(int(time.monotonic() - self.started)),
                "opcounters": {k: Int64(v) for k, v in self.opcounters.items()},
                "metrics": {"commands": {n: {"total": Int64(t), "failed": Int64(f)}
                                         for n, (t, f) in sorted(self.command_counts.items())}}}

    async def cmd_configurefailpoint(self, body, conn):
        if body.get("$db") != "admin":
            raise CommandError(13, "configureFailPoint may only be run against the admin database.", "Unauthorized")
        name = body.get("configureFailPoint")
        if name == "stopReplProducer":
            mode = body.get("mode")
            if mode not in ("alwaysOn", "off"):
                raise CommandError(2, "stopReplProducer: dev-mongo models modes alwaysOn and off only", "BadValue")
            held, self.unreplicated = self.unreplicated, ([] if mode == "alwaysOn" else None)
            if mode == "off" and held:
                for (db, coll), _key, event in held:  # a majority catches up: they commit, in order
                    self.log.publish(db, coll, event)
                await self.log.notify()
            return {"count": 0}
        if name != "failCommand":
            raise CommandError(2, f"Cannot find failpoint named {name!r} (this server has failCommand and "
                                  f"stopReplProducer only)", "BadValue")
        count = self.fail_point.configure(body.get("mode"), body.get("data") or {})
        return {"count": count}

    def cmd_devmongorollback(self, body, conn):
        """Dev-only: what a failover rolls back — the inserts held by stopReplProducer are gone, no event ever told."""
        if body.get("$db") != "admin":
            raise CommandError(13, "devMongoRollBack may only be run against the admin database.", "Unauthorized")
        held = self.unreplicated or []
        for (db, name), key, _event in held:
            coll = self.dbs.get(db, {}).get(name)
            if coll is not None and key in coll.docs:
                coll.remove(key)
        if self.unreplicated is not None:
            self.unreplicated = []
        return {"rolledBack": len(held)}

    def hidden_from_majority(self, db: str, name: str, body: dict) -> set:
        """The id keys a readConcern majority read of db.name must not see (stopReplProducer's held inserts)."""
        concern = body.get("readConcern") or {}
        level = concern.get("level", "local")
        if level not in ("local", "majority", "available", "linearizable", "snapshot"):
            raise CommandError(9, f"invalid read concern level {level!r}", "FailedToParse")
        if level == "majority" and self.args.enableMajorityReadConcern == "false":
            raise CommandError(148, "Majority read concern requested, but server was not started with "
                                    "--enableMajorityReadConcern.", "ReadConcernMajorityNotEnabled")
        after = concern.get("afterClusterTime")
        if after is not None and (after.time, after.inc) > (self.log.clock().time, self.log.clock().inc):
            raise CommandError(72, "readConcern afterClusterTime value must not be greater than the current clusterTime",
                               "InvalidOptions")
        if level != "majority" or not self.unreplicated:
            return set()
        return {key for (d, n), key, _event in self.unreplicated if (d, n) == (db, name)}

    def cmd_replsetgetstatus(self, body, conn):
        if not self.args.replset:
            raise CommandError(76, "not running with --replSet", "NoReplicationEnabled")
        return {"set": self.args.replset, "myState": 1,
                "members": [{"_id": 0, "name": self.host, "stateStr": "PRIMARY", "health": 1.0}]}

    def cmd_connectionstatus(self, body, conn):
        # No users here (every login is refused): nobody is authenticated, as on a mongod without authorization.
        info = {"authenticatedUsers": [], "authenticatedUserRoles": []}
        if body.get("showPrivileges"):
            info["authenticatedUserPrivileges"] = []
        return {"authInfo": info}

    def cmd_listdatabases(self, body, conn):
        return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": not c} for n, c in self.dbs.items()],
                "totalSize": 0}

    def cmd_listcollections(self, body, conn):
        db = body.get("$db", "test")
        infos = [{"name": n, "type": "collection", "options": {},
                  "info": {"readOnly": False, "uuid": bson.Binary(c.uuid.bytes, 4)}}
                 for n, c in self.dbs[db].items()]
        if body.get("filter"):
            spec = decode_wire_value(body["filter"])
            infos = [i for i in infos if QueryEngine.match(i, spec)]
        return self.cursor_reply(f"{db}.$cmd.listCollections", infos, None)

    def cmd_create(self, body, conn):
        db, name, coll = self.coll(body, "create")
        if coll is not None:
            raise CommandError(48, f"Collection {db}.{name} already exists.", "NamespaceExists")
        self.dbs[db][name] = Collection()
        return {}

    def cmd_createindexes(self, body, conn):
        db, name, coll = self.coll(body, "createIndexes", create=True)
        before = len(coll.indexes)
        for spec in body.get("indexes", []):
            if spec.get("unique") and "partialFilterExpression" in spec:
                raise CommandError(2, "dev-mongo does not enforce partial unique indexes", "BadValue")
            if not any(i["name"] == spec["name"] for i in coll.indexes):
                index = dict(spec, v=2)
                if index.get("unique"):
                    # Building over existing duplicates fails, as mongod's index build does.
                    seen: dict = {}
                    for key, doc in coll.docs.items():
                        for k in index_keys(doc, index):
                            if k in seen and seen[k] != key:
                                raise CommandError(11000, f"Index build failed: E11000 duplicate key error collection: "
                                                          f"{db}.{name} index: {index['name']}", "DuplicateKey")
                            seen[k] = key
                coll.indexes.append(index)
        return {"numIndexesBefore": before, "numIndexesAfter": len(coll.indexes), "createdCollectionAutomatically": False}

    def cmd_listindexes(self, body, conn):
        db, name, coll = self.coll(body, "listIndexes")
        if coll is None:
            raise CommandError(26, f"ns does not exist: {db}.{name}", "NamespaceNotFound")
        return self.cursor_reply(f"{db}.{name}", coll.indexes, None)

    def cmd_drop(self, body, conn):
        db, name, coll = self.coll(body, "drop")
        if coll is None:
            return {"ns": f"{db}.{name}", "nIndexesWas": 0}
        del self.dbs[db][name]
        self.publish(db, name, {"operationType": "drop"})
        return {"ns": f"{db}.{name}", "nIndexesWas": len(coll.indexes)}

    def cmd_renamecollection(self, body, conn):
        # Within one database (MongoDB also renames across databases, by copying: not emulated, refused here).
        if body.get("$db") != "admin":
            raise CommandError(13, "renameCollection may only be run against the admin database.", "Unauthorized")
        source, target = body.get("renameCollection"), body.get("to")
        if not all(isinstance(n, str) and "." in n and not n.startswith(".") and not n.endswith(".") for n in (source, target)):
            raise CommandError(73, f"Invalid namespace specified '{source}'", "InvalidNamespace")
        (sdb, sname), (tdb, tname) = source.split(".", 1), target.split(".", 1)
        if sdb != tdb:
            raise CommandError(20, "dev-mongo renames collections within one database only", "IllegalOperation")
        if source == target:
            raise CommandError(20, "Can't rename a collection to itself", "IllegalOperation")
        colls = self.dbs[sdb]
        if sname not in colls:
            raise CommandError(26, f"Source collection {source} does not exist", "NamespaceNotFound")
        if tname in colls and not body.get("dropTarget"):
            raise CommandError(48, "target namespace exists", "NamespaceExists")
        # The collection keeps its uuid under the new name. One event: collection streams on the source and on the
        # target each get it, then their invalidate (no separate drop of a replaced target).
        colls[tname] = colls.pop(sname)
        self.publish(sdb, sname, {"operationType": "rename", "to": {"db": tdb, "coll": tname}})
        return {}

    def cmd_dropdatabase(self, body, conn):
        db = body.get("$db", "test")
        for name in list(self.dbs.get(db, {})):
            del self.dbs[db][name]
            self.publish(db, name, {"operationType": "drop"})
        return {"dropped": db}

    # ---- writes -----------------------------------------------------------------------------------------------
    @staticmethod
    def check_batch(body: dict, field: str) -> list:
        ops = body.get(field)
        if not isinstance(ops, list):
            raise CommandError(40414, f"BSON field '{next(iter(body))}.{field}' is missing but a required field",
                               "Location40414")
        if not ops or len(ops) > MAX_WRITE_BATCH:
            raise CommandError(16, f"Write batch sizes must be between 1 and {MAX_WRITE_BATCH}. "
                                   f"Got {len(ops)} operations.", "InvalidLength")
        return ops

    async def cmd_insert(self, body, conn):
        docs = self.check_batch(body, "documents")
        db, name, coll = self.coll(body, "insert", create=True)
        ordered = body.get("ordered", True)
        n, errors = 0, []
        for index, raw in enumerate(docs):
            size = len(bson.encode(raw))
            if size > MAX_BSON:
                errors.append({"index": index, "code": 2, "errmsg": f"object to insert too large. size in bytes: "
                                                                    f"{size}, max size: {MAX_BSON}"})
                if ordered:
                    break
                continue
            doc = decode_wire_value(raw)
            if "_id" not in doc:
                doc = {"_id": ObjectId(), **doc}
            elif isinstance(doc["_id"], (list, Regex, UndefinedType)):
                kind = {list: "array", Regex: "regex"}.get(type(doc["_id"]), "undefined")
                errors.append({"index": index, "code": 53, "errmsg": f"The '_id' value cannot be of type {kind}"})
                if ordered:
                    break
                continue
            key = id_key(doc["_id"])
            if key in coll.docs:
                errors.append(self.dup_error(index, db, name, raw.get("_id", doc["_id"])))
                if ordered:
                    break
                continue
            try:
                self.check_unique(db, name, coll, key, doc)
            except CommandError as err:
                errors.append(self.statement_error(index, err))
                if ordered:
                    break
                continue
            coll.put(key, doc)
            coll.sizes[key] = size + (0 if "_id" in raw else 17)
            self.publish(db, name, {"operationType": "insert", "documentKey": {"_id": doc["_id"]}, "post": doc})
            n += 1
        self.opcounters["insert"] += n + len(errors)
        await self.log.notify()
        reply = self.write_reply({"n": n}, errors)
        w = (body.get("writeConcern") or {}).get("w", "majority")  # mongod 5.0+: the implicit default is majority
        if self.unreplicated is not None and n and w not in (0, 1):
            # No secondary acknowledges while stopReplProducer is on: mongod waits out wtimeout (forever without one).
            reply["writeConcernError"] = {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out"}
        return reply

    def check_unique(self, db, name, coll, key, doc) -> None:
        """Raises E11000 when `doc` would break a unique secondary index of `coll`."""
        conflict = coll.unique_conflict(key, doc)
        if conflict is None:
            return
        index, values = conflict
        shown = ", ".join(f"{f}: {v!r}" for f, v in zip(index["key"], values))
        error = CommandError(11000, f"E11000 duplicate key error collection: {db}.{name} index: {index['name']} "
                                    f"dup key: {{ {shown} }}", "DuplicateKey")
        error.key_pattern = dict(index["key"])
        error.key_value = {f: encode_wire_value(v) for f, v in zip(index["key"], values)}
        raise error

    @staticmethod
    def dup_error(index, db, name, id_value) -> dict:
        return {"index": index, "code": 11000, "keyPattern": {"_id": 1}, "keyValue": {"_id": id_value},
                "errmsg": f"E11000 duplicate key error collection: {db}.{name} index: _id_ dup key: {{ _id: {id_value!r} }}"}

    @staticmethod
    def write_reply(reply: dict, errors: list) -> dict:
        if errors:
            reply["writeErrors"] = errors
        return reply

    @staticmethod
    def statement_error(index: int, err: Exception) -> dict:
        if isinstance(err, CommandError):
            out = {"index": index, "code": err.code, "errmsg": err.message}
            if err.code == 11000 and getattr(err, "key_pattern", None) is not None:
                out.update({"keyPattern": err.key_pattern, "keyValue": err.key_value})
            elif err.code == 11000 and getattr(err, "key_value", None) is not None:
                out.update({"keyPattern": {"_id": 1}, "keyValue": {"_id": err.key_value}})
            return out
        return {"index": index, "code": 2, "errmsg": f"{type(err).__name__}: {err}"}

    async def cmd_update(self, body, conn):
        updates = self.check_batch(body, "updates")
        db, name, coll = self.coll(body, "update", create=True)
        ordered = body.get("ordered", True)
        n = modified = 0
        upserted, errors = [], []
        for index, spec in enumerate(updates):
            self.opcounters["update"] += 1
            try:
                matched, changed, new_id = self.apply_one_update(db, name, coll, spec)
            except Exception as err:
                errors.append(self.statement_error(index, err))
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

    @staticmethod
    def check_size(coll: Collection, key, doc: dict, bound: int | None) -> None:
        """Refuse a document over 16 MiB (BSONObjectTooLarge). `bound` is an upper bound of its size (the old
        document's bound plus the size of the update), so documents far from the limit are never encoded."""
        if bound is None or bound > MAX_BSON - 4096:
            bound = len(bson.encode(encode_wire_value(doc)))
            if bound > MAX_BSON:
                raise CommandError(10334, f"Resulting document after update is larger than {MAX_BSON}",
                                   "BSONObjectTooLarge")
        coll.sizes[key] = bound

    def apply_one_update(self, db, name, coll, spec):
        raw_filter = spec.get("q", {})
        filter_spec = decode_wire_value(raw_filter)
        raw_update = spec.get("u", {})
        update = decode_wire_value(raw_update)
        if not isinstance(update, dict):
            raise CommandError(9, "Update argument must be an object (pipeline updates are not supported here)",
                               "FailedToParse")
        is_replace = not any(k.startswith("$") for k in update)
        # Growth bound: a $[] / $[x] path can copy a value into every array element, so those are measured exactly.
        growth = None if "$[" in repr(list(update.values()) if not is_replace else "") else len(bson.encode(raw_update))
        plain = None if is_replace else plain_set(update)
        targets = self.select(coll, raw_filter, limit=0 if spec.get("multi") else 1)
        changed = 0
        for doc in targets:
            key = id_key(doc["_id"])
            if is_replace:
                new = {"_id": doc["_id"], **{k: v for k, v in update.items() if k != "_id"}}
                if "_id" in update and id_key(update["_id"]) != key:
                    raise CommandError(66, "the (immutable) field '_id' was found to have been altered", "ImmutableField")
            elif plain is not None and "$setOnInsert" not in update:
                new = {**doc, **plain["$set"]}  # top-level $set of plain fields: what the engine would do, faster
            else:
                new = _deep_copy(doc)
                UpdateEngine.apply_update(new, update, selector_filter=filter_spec)
            if new != doc:
                old_bound = coll.sizes.get(key)
                self.check_size(coll, key, new, None if growth is None or old_bound is None else old_bound + growth)
                self.check_unique(db, name, coll, key, new)
                coll.put(key, new)
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
        seed_upsert_document(new, filter_spec)
        if is_replace:
            new = {**({"_id": new["_id"]} if "_id" in new else {}), **update}
        elif plain is not None:
            new.update(plain["$set"])
            new.update(plain["$setOnInsert"])
        else:
            UpdateEngine.apply_update(new, update, selector_filter=filter_spec, is_upsert_insert=True)
        if "_id" not in new:
            new = {"_id": ObjectId(), **new}
        else:
            new = {"_id": new["_id"], **{k: v for k, v in new.items() if k != "_id"}}
        key = id_key(new["_id"])
        if key in coll.docs:  # the filter did not match but the _id exists: MongoDB answers E11000
            err = self.dup_error(0, db, name, encode_wire_value(new["_id"]))
            error = CommandError(11000, err["errmsg"], "DuplicateKey")
            error.key_value = encode_wire_value(new["_id"])
            raise error
        self.check_size(coll, key, new, None if growth is None else growth + len(bson.encode(raw_filter)) + 64)
        self.check_unique(db, name, coll, key, new)
        coll.put(key, new)
        self.publish(db, name, {"operationType": "insert", "documentKey": {"_id": new["_id"]}, "post": new})
        return 0, 0, new["_id"]

    async def cmd_delete(self, body, conn):
        deletes = self.check_batch(body, "deletes")
        db, name, coll = self.coll(body, "delete")
        ordered = body.get("ordered", True)
        n, errors = 0, []
        for index, spec in enumerate(deletes):
            self.opcounters["delete"] += 1
            try:
                targets = self.select(coll, spec.get("q", {}), limit=1 if spec.get("limit", 0) == 1 else 0)
            except Exception as err:
                errors.append(self.statement_error(index, err))
                if ordered:
                    break
                continue
            for doc in targets:
                coll.remove(id_key(doc["_id"]))
                self.publish(db, name, {"operationType": "delete", "documentKey": {"_id": doc["_id"]}})
                n += 1
        await self.log.notify()
        return self.write_reply({"n": n}, errors)

    # ---- reads ------------------------------------------------------------------------------------------------
    def cmd_find(self, body, conn):
        db, name, coll = self.coll(body, "find")
        self.opcounters["query"] += 1
        if db == "local" and name == "oplog.rs":
            return self.oplog_find(body)
        skip = int(body.get("skip", 0) or 0)
        limit = abs(int(body.get("limit", 0) or 0))
        hidden = self.hidden_from_majority(db, name, body)
        if hidden:
            docs = [d for d in self.select(coll, body.get("filter") or {}, body.get("sort")) if id_key(d["_id"]) not in hidden]
            docs = docs[skip:skip + limit] if limit else docs[skip:]
        else:
            docs = self.select(coll, body.get("filter") or {}, body.get("sort"), skip, limit)
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

    def cmd_count(self, body, conn):
        db, name, coll = self.coll(body, "count")
        self.opcounters["command"] += 1
        n = len(self.select(coll, body.get("query") or {}))
        skip, limit = int(body.get("skip", 0) or 0), abs(int(body.get("limit", 0) or 0))
        n = max(0, n - skip)
        return {"n": min(n, limit) if limit else n}

    def cmd_distinct(self, body, conn):
        db, name, coll = self.coll(body, "distinct")
        docs = self.select(coll, body.get("query") or {})
        out = apply_pipeline(docs, [{"$group": {"_id": "$" + body["key"]}}])
        return {"values": [encode_wire_value(d["_id"]) for d in out]}

    def cmd_getmore(self, body, conn):
        cid = int(body["getMore"])
        self.opcounters["getmore"] += 1
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

    def cmd_killcursors(self, body, conn):
        killed = []
        for cid in body.get("cursors", []):
            if self.cursors.pop(int(cid), None) is not None:
                killed.append(cid)
        return {"cursorsKilled": killed, "cursorsNotFound": [], "cursorsAlive": [], "cursorsUnknown": []}

    def cmd_aggregate(self, body, conn):
        pipeline = body.get("pipeline", [])
        if pipeline and "$changeStream" in pipeline[0]:
            return self.open_stream(body, pipeline)
        if any(isinstance(s, dict) and "$changeStreamSplitLargeEvent" in s for s in pipeline):
            raise CommandError(40602, "$changeStreamSplitLargeEvent is only valid in a $changeStream pipeline",
                               "Location40602")
        db = body.get("$db", "test")
        target = body["aggregate"]
        coll = self.dbs[db].get(target) if isinstance(target, str) else None
        if coll and pipeline and isinstance(pipeline[0], dict) and set(pipeline[0]) == {"$match"} \
                and isinstance(pipeline[0]["$match"], dict) and "$expr" not in pipeline[0]["$match"]:
            docs = self.select(coll, pipeline[0]["$match"])  # a leading $match uses the _id index, as find does
            pipeline = pipeline[1:]
        else:
            docs = list(coll.docs.values()) if coll else []
        out = apply_pipeline(docs, decode_wire_value(pipeline)) if pipeline else docs
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
        rest = list(pipeline[1:])
        split_at = [i for i, stage in enumerate(rest) if isinstance(stage, dict) and "$changeStreamSplitLargeEvent" in stage]
        if split_at and (len(split_at) > 1 or split_at[0] != len(rest) - 1):
            raise CommandError(7182802, "$changeStreamSplitLargeEvent can only appear once, as the last stage of a "
                                        "$changeStream pipeline", "Location7182802")
        if split_at and not splits_large_events():
            raise CommandError(40324, "Unrecognized pipeline stage name: '$changeStreamSplitLargeEvent'", "Location40324")
        split = bool(split_at)
        if split:
            rest = rest[:-1]
        token = opts.get("resumeAfter") or opts.get("startAfter")
        skip_fragments = 0
        invalidate_next = None
        if token is not None:
            seq, fragment = position_of(token)
            if fragment == INVALIDATE:
                if opts.get("startAfter") is None:
                    raise CommandError(260, "Attempting to resume a change stream using 'resumeAfter' is not allowed from an "
                                            "invalidate notification.", "InvalidResumeToken")
                fragment, seq_after_invalidate = 0, True
            else:
                seq_after_invalidate = False
            if seq > self.log.last_seq or seq < self.log.oldest_seq() - (0 if fragment else 1):
                raise CommandError(286, "Resume of change stream was not possible, as the resume point may no "
                                        "longer be in the oplog.", "ChangeStreamHistoryLost")
            if fragment and not split:
                raise CommandError(280, "Attempting to resume a change stream using a split event resume token, "
                                        "but $changeStreamSplitLargeEvent is not in the pipeline",
                                   "ChangeStreamFatalError")
            # Resuming from a fragment: the same event again, from the fragment after it.
            next_seq, skip_fragments, pos = (seq, fragment, (seq, fragment)) if fragment else (seq + 1, 0, (seq, 0))
            if not seq_after_invalidate and scope == "collection":
                # After a drop of this collection: its invalidate comes (again) first.
                dropped = next((e for e in self.log.events if e.seq == seq), None)
                if dropped is not None and self.ends_collection_stream(dropped, db, coll):
                    invalidate_next = dropped
            elif seq_after_invalidate:
                pos = (seq, INVALIDATE)
        elif opts.get("startAtOperationTime") is not None:
            ts = opts["startAtOperationTime"]
            wanted = (ts.time, ts.inc)
            first = self.log.events[0].ts if self.log.events else None
            if first is not None and wanted < first and self.log.events[0].seq > 1:
                raise CommandError(286, "Resume of change stream was not possible, as the resume point may no "
                                        "longer be in the oplog.", "ChangeStreamHistoryLost")
            next_seq = next((e.seq for e in self.log.events if e.ts >= wanted), self.log.last_seq + 1)
            pos = (next_seq - 1, 0)
        else:
            next_seq = self.log.last_seq + 1
            pos = (next_seq - 1, 0)
        mode = opts.get("fullDocument", "default")
        cid = next(self.cursor_ids)
        ns = f"{db}.{target if isinstance(target, str) else '$cmd.aggregate'}"
        cursor = StreamCursor(cid, ns, db, coll, scope, next_seq, mode, decode_wire_value(rest), split, pos)
        cursor.skip_fragments = skip_fragments
        if invalidate_next is not None:
            doc = self.invalidate_event(invalidate_next)
            if cursor.pipeline:
                doc = next(iter(apply_pipeline([doc], cursor.pipeline)), None)
            if doc is not None:
                raw = encode_wire_value(doc)
                cursor.pending.append((raw, len(bson.encode(raw)), (invalidate_next.seq, INVALIDATE)))
            cursor.close_when_drained = True
        batch_size = (body.get("cursor") or {}).get("batchSize")
        batch = self.drain(cursor, 0 if batch_size == 0 else batch_size or 101)
        self.cursors[cid] = cursor
        out = {"firstBatch": batch, "id": Int64(0 if cursor.closed else cid), "ns": ns,
               "postBatchResumeToken": token_for(*cursor.pos)}
        if cursor.closed:
            self.cursors.pop(cid, None)
        return {"cursor": out}

    async def stream_get_more(self, cursor: StreamCursor, body):
        limit = int(body.get("batchSize") or 1000)
        deadline = time.monotonic() + int(body.get("maxTimeMS") or 1000) / 1000.0
        if cursor.next_seq < self.log.oldest_seq() and not cursor.pending:
            self.cursors.pop(cursor.id, None)
            raise CommandError(286, "change stream history lost", "ChangeStreamHistoryLost")
        batch = self.drain_or_kill(cursor, limit)
        while not batch and not cursor.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            async with self.log.changed:
                try:
                    await asyncio.wait_for(self.log.changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            batch = self.drain_or_kill(cursor, limit)
        cid = cursor.id
        if cursor.closed:
            self.cursors.pop(cid, None)
            cid = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cid), "ns": cursor.ns,
                           "postBatchResumeToken": token_for(*cursor.pos)}}

    def drain_or_kill(self, cursor: StreamCursor, limit: int) -> list:
        try:
            return self.drain(cursor, limit)
        except CommandError:
            self.cursors.pop(cursor.id, None)  # an executor error ends the cursor, as in mongod
            raise

    def drain(self, cursor: StreamCursor, limit: int) -> list:
        """Up to `limit` events, at most 16 MiB together (an event that does not fit waits for the next batch)."""
        out, size = [], 0
        if limit == 0:
            return out
        events = None
        while True:
            if cursor.pending:
                raw, dsize, pos = cursor.pending[0]
                if out and (len(out) >= limit or size + dsize > MAX_BSON):
                    break
                cursor.pending.popleft()
                out.append(raw)
                size += dsize
                cursor.pos = pos
                continue
            if cursor.close_when_drained:
                cursor.closed = True
            if len(out) >= limit or cursor.closed:
                break
            if events is None:
                offset = cursor.next_seq - self.log.oldest_seq()
                events = itertools.islice(self.log.events, max(offset, 0), None)
            event = next(events, None)
            if event is None:
                break
            cursor.next_seq = event.seq + 1
            rendered = False
            for doc in self.render(cursor, event):
                if cursor.pipeline:
                    doc = next(iter(apply_pipeline([doc], cursor.pipeline)), None)
                    if doc is None:
                        continue
                raw = encode_wire_value(doc)
                dsize = len(bson.encode(raw))
                if dsize <= MAX_BSON:
                    if cursor.skip_fragments:
                        raise CommandError(280, "resume token names a fragment of an event this change stream does not "
                                                "split: the resumed stream must render the event as the first did",
                                           "ChangeStreamFatalError")
                    cursor.pending.append((raw, dsize, (event.seq, INVALIDATE if doc.get("operationType") == "invalidate" else 0)))
                elif cursor.split:
                    fragments = self.split_event(raw, event.seq)
                    if cursor.skip_fragments > len(fragments):
                        raise CommandError(280, "resume token names a fragment this event does not have",
                                           "ChangeStreamFatalError")
                    for i, fragment in enumerate(fragments, 1):
                        if i > cursor.skip_fragments:
                            cursor.pending.append((fragment, len(bson.encode(fragment)), (event.seq, i)))
                else:
                    raise CommandError(10334, f"Executor error during getMore :: caused by :: BSONObj size: {dsize} "
                                              f"(0x{dsize:X}) is invalid. Size must be between 0 and {MAX_BSON}(16MB) "
                                              f"First element: _id: {raw['_id']}", "BSONObjectTooLarge")
                rendered = True
            cursor.skip_fragments = 0
            if not rendered:
                cursor.pos = (event.seq, 0)  # passed over: the postBatchResumeToken still moves on
        return out

    @staticmethod
    def split_event(raw: dict, seq: int) -> list[dict]:
        """MongoDB 7.0's $changeStreamSplitLargeEvent: the event's top-level fields (never their insides) packed
        into fragments of at most 16 MiB, as many fields as possible in the first (smallest fields first), each
        fragment with its own resume token and splitEvent {fragment, of}."""
        fields = [(name, value, len(bson.encode({name: value})) - 5) for name, value in raw.items() if name != "_id"]
        overhead = len(bson.encode({"_id": token_for(seq, 9999), "splitEvent": {"fragment": 9999, "of": 9999}}))
        room = MAX_BSON - overhead
        groups: list[list] = []
        used = room + 1
        for field in sorted(fields, key=lambda f: f[2]):
            if field[2] > room:
                raise CommandError(10334, f"Executor error during getMore :: caused by :: BSONObj size: {field[2]} "
                                          f"(0x{field[2]:X}) is invalid. Size must be between 0 and {MAX_BSON}(16MB): "
                                          f"field '{field[0]}' is too large to fit in one fragment",
                                   "BSONObjectTooLarge")
            if used + field[2] > room:
                groups.append([])
                used = 0
            groups[-1].append(field[0])
            used += field[2]
        order = {name: i for i, (name, _, _) in enumerate(fields)}
        out = []
        for i, names in enumerate(groups, 1):
            fragment = {"_id": token_for(seq, i), "splitEvent": {"fragment": i, "of": len(groups)}}
            for name in sorted(names, key=order.__getitem__):
                fragment[name] = raw[name]
            out.append(fragment)
        return out

    @staticmethod
    def ends_collection_stream(event: Event, db: str, coll: str) -> bool:
        """A drop of the collection, or a rename from or onto its name: MongoDB's collection streams on either side
        of a rename get the `rename`, then an `invalidate`."""
        op = event.doc["operationType"]
        if op == "rename" and event.doc["to"] == {"db": db, "coll": coll}:
            return True
        return op in ("drop", "rename") and event.db == db and event.coll == coll

    def render(self, cursor: StreamCursor, event: Event) -> list[dict]:
        if cursor.scope == "collection":
            if event.doc["operationType"] == "rename":
                if not self.ends_collection_stream(event, cursor.db, cursor.coll):
                    return []
            elif event.db != cursor.db or event.coll != cursor.coll:
                return []
        elif cursor.scope != "cluster" and event.db != cursor.db:
            return []
        base = {"_id": token_for(event.seq), "operationType": event.doc["operationType"],
                "clusterTime": WireTimestamp(*event.ts), "wallTime": event.wall,
                "ns": {"db": event.db, "coll": event.coll}}
        op = base["operationType"]
        if op == "rename":
            base["to"] = dict(event.doc["to"])
        if op in ("drop", "rename"):
            out = [base]
            if cursor.scope == "collection":
                out.append(self.invalidate_event(event))
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

    @staticmethod
    def invalidate_event(drop: Event) -> dict:
        return {"_id": token_for(drop.seq, INVALIDATE), "operationType": "invalidate",
                "clusterTime": WireTimestamp(*drop.ts), "wallTime": drop.wall}

    def lookup(self, event: Event):
        coll = self.dbs.get(event.db, {}).get(event.coll)
        if coll is None:
            return None
        return coll.docs.get(id_key(event.doc["documentKey"]["_id"]))


def plain_set(update: dict) -> dict | None:
    """{"$set": {...}, "$setOnInsert": {...}} when the update only sets top-level fields (no dots, no `$`, no `_id`,
    no field in both): the common replication upsert, applied without the update engine. Else None."""
    if not update or not set(update) <= {"$set", "$setOnInsert"}:
        return None
    if any(not isinstance(part, dict) or not part for part in update.values()):
        return None  # an empty or malformed operator: the engine's rules
    out = {"$set": update.get("$set", {}), "$setOnInsert": update.get("$setOnInsert", {})}
    fields = []
    for part in out.values():
        fields.extend(part)
    if len(set(fields)) != len(fields) or any("." in f or f.startswith("$") or f == "_id" or not f for f in fields):
        return None
    return out


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


async def freeze_survivors() -> None:
    """The event log and the documents are millions of long-lived objects: a full garbage collection over them
    stalls every client for a second or more, every few seconds (latency no mongod has). Survivors are moved out of
    the collector's reach each second; reference counting still frees them, only cycles among them would stay."""
    while True:
        await asyncio.sleep(1)
        gc.freeze()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--replset", default="", help="answer hello as the primary of this one-member replica set")
    parser.add_argument("--history", type=int, default=1_000_000, help="change events retained (the 'oplog')")
    parser.add_argument("--data", default="", help="file to load at start and write at SIGTERM/SIGINT")
    parser.add_argument("--enableMajorityReadConcern", default="true", choices=["true", "false"],
                        help="false: readConcern majority is refused with 148, as mongod before 5.0 started so")
    parser.add_argument("--server-version", default=VERSION,
                        help="the MongoDB version to report (and behave as where versions differ: "
                             "$changeStreamSplitLargeEvent needs 7.0 or 6.0.9)")
    args = parser.parse_args()
    set_version(args.server_version)
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
    freezer = asyncio.create_task(freeze_survivors())
    await stop.wait()
    freezer.cancel()
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

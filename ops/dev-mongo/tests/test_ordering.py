"""Type bracketing in query comparisons and MongoDB's cross-type sort order.
Reference: MongoDB manual, "Comparison/Sort Order" (BSON types) and "Comparison Query Operators" (type bracketing)."""
import datetime
import random
import uuid

import pytest
from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

UTC = datetime.timezone.utc
OID = ObjectId("65a1b2c3d4e5f60718293a4b")
UUID = Binary(uuid.UUID("12345678-1234-5678-1234-567812345678").bytes, 4)
DATE = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

# One _id of every type the brief names (int, long, double, decimal, string, ObjectId, UUID, date, subdocument, bool).
MIXED = [3, 8, Int64(6), Int64(2), 5.5, 7.25, Decimal128("9.5"), Decimal128("1"), "apple", "5", OID, UUID, DATE,
         {"k": 1}, True, False]


def ids(cursor):
    return [d["_id"] for d in cursor]


@pytest.fixture
def mixed(db):
    db.c.insert_many([{"_id": v, "n": i} for i, v in enumerate(MIXED)])
    return db.c


def test_gt_number_returns_only_numbers(mixed):
    got = ids(mixed.find({"_id": {"$gt": 5}}).sort("_id", 1))
    assert got == [5.5, 6, 7.25, 8, Decimal128("9.5")]
    assert mixed.count_documents({"_id": {"$gt": 5}}) == 5
    assert ids(mixed.aggregate([{"$match": {"_id": {"$gt": 5}}}, {"$sort": {"_id": 1}}])) == got
    assert ids(mixed.find({"_id": {"$lt": 3}}).sort("_id", 1)) == [Decimal128("1"), 2]
    # The same filter on a non-_id field goes through the scan path, with the same answer.
    for doc in list(mixed.find()):
        mixed.update_one({"_id": doc["_id"]}, {"$set": {"v": doc["_id"]}})
    assert sorted(d["n"] for d in mixed.find({"v": {"$gt": 5}})) == sorted(MIXED.index(v) for v in got)


def test_gt_string_objectid_date_binary_bool_document_stay_in_their_bracket(mixed):
    assert ids(mixed.find({"_id": {"$gte": "a"}})) == ["apple"]
    assert ids(mixed.find({"_id": {"$lt": "b"}}).sort("_id", 1)) == ["5", "apple"]
    assert ids(mixed.find({"_id": {"$gt": ObjectId("000000000000000000000000")}})) == [OID]
    assert ids(mixed.find({"_id": {"$lt": datetime.datetime(2030, 1, 1, tzinfo=UTC)}})) == [DATE.replace(tzinfo=None)]
    assert ids(mixed.find({"_id": {"$gt": Binary(b"", 0)}})) == [UUID]
    assert ids(mixed.find({"_id": {"$gte": False}}).sort("_id", 1)) == [False, True]
    assert ids(mixed.find({"_id": {"$gt": {}}})) == [{"k": 1}]
    assert ids(mixed.find({"_id": {"$gt": 5, "$lt": "z"}})) == []  # two brackets: nothing satisfies both


def test_filters_of_writes_are_bracketed(mixed):
    assert mixed.update_many({"_id": {"$gt": 5}}, {"$set": {"big": True}}).matched_count == 5
    assert mixed.count_documents({"big": True}) == 5
    assert mixed.delete_many({"_id": {"$lte": 3}}).deleted_count == 3  # 1, 2, 3: not "5", not False
    assert mixed.count_documents({}) == len(MIXED) - 3


def test_minkey_maxkey_null_and_missing(db):
    db.c.insert_many([{"_id": 1, "a": 1}, {"_id": 2, "a": "x"}, {"_id": 3, "a": None}, {"_id": 4},
                      {"_id": 5, "a": [1, "y"]}, {"_id": 6, "a": MinKey()}, {"_id": 7, "a": MaxKey()}])
    q = lambda f: sorted(ids(db.c.find(f)))  # noqa: E731
    assert q({"a": {"$gt": MinKey()}}) == [1, 2, 3, 4, 5, 7]
    assert q({"a": {"$gte": MinKey()}}) == [1, 2, 3, 4, 5, 6, 7]
    assert q({"a": {"$lt": MaxKey()}}) == [1, 2, 3, 4, 5, 6]
    assert q({"a": {"$lt": MinKey()}}) == []
    assert q({"a": {"$gte": None}}) == [3, 4]
    assert q({"a": {"$lte": None}}) == [3, 4]
    assert q({"a": {"$gt": None}}) == []
    assert q({"a": {"$lt": 5}}) == [1, 5]
    assert q({"a": {"$gt": "a"}}) == [2, 5]
    assert q({"a": None}) == [3, 4]


def test_eq_in_ne_compare_numbers_across_types_only(db):
    db.c.insert_many([{"_id": 1, "v": 5}, {"_id": 2, "v": Int64(5)}, {"_id": 3, "v": 5.0}, {"_id": 4, "v": Decimal128("5.00")},
                      {"_id": 5, "v": "5"}, {"_id": 6, "v": True}, {"_id": 7, "v": 1}, {"_id": 8, "v": [5, 6]}])
    q = lambda f: sorted(ids(db.c.find(f)))  # noqa: E731
    assert q({"v": 5}) == [1, 2, 3, 4, 8]
    assert q({"v": {"$eq": Decimal128("5")}}) == [1, 2, 3, 4, 8]
    assert q({"v": {"$in": [Int64(5), "x"]}}) == [1, 2, 3, 4, 8]
    assert q({"v": {"$ne": 5}}) == [5, 6, 7]
    assert q({"v": True}) == [6]
    assert q({"v": {"$nin": [5, True]}}) == [5, 7]
    for value in (5, 5.0, Int64(5), Decimal128("5")):  # the _id hash lookup treats them as one value too
        db.d.delete_many({})
        db.d.insert_one({"_id": value})
        assert db.d.count_documents({"_id": 5.0}) == 1 and db.d.count_documents({"_id": {"$in": [Decimal128("5")]}}) == 1
        with pytest.raises(Exception, match="E11000"):
            db.d.insert_one({"_id": Int64(5)})


def test_nan_compares_equal_to_nan_only(db):
    db.c.insert_many([{"_id": 1, "v": float("nan")}, {"_id": 2, "v": float("-inf")}, {"_id": 3, "v": 0},
                      {"_id": 4, "v": Decimal128("NaN")}])
    q = lambda f: sorted(ids(db.c.find(f)))  # noqa: E731
    assert q({"v": {"$gte": float("-inf")}}) == [2, 3]
    assert q({"v": {"$lt": 1}}) == [2, 3]
    assert q({"v": {"$gte": float("nan")}}) == [1, 4]
    assert q({"v": {"$gt": float("nan")}}) == []
    assert ids(db.c.find().sort([("v", 1), ("_id", 1)])) == [1, 4, 2, 3]  # NaN sorts below every number


def test_binary_compares_by_length_then_subtype_then_bytes(db):
    vals = [Binary(b"\xff", 0), Binary(b"\x00\x00", 0), Binary(b"\x00", 5), Binary(b"\x01", 0), Binary(b"\x00" * 16, 4)]
    db.c.insert_many([{"_id": i, "b": v} for i, v in enumerate(vals)])
    assert ids(db.c.find().sort("b", 1)) == [3, 0, 2, 1, 4]
    assert sorted(ids(db.c.find({"b": {"$gt": Binary(b"\xff", 0)}}))) == [1, 2, 4]


FULL_ORDER = [MinKey(), None, -1.5, Int64(2), Decimal128("3"), "a", "b", {"a": 1}, {"a": 1, "b": 0}, {"b": 0},
              [], Binary(b"\x00", 0), UUID, OID, False, True, DATE, Timestamp(1, 1), Regex("a", ""), MaxKey()]


def test_sort_follows_bson_type_order(db):
    """Documented order: MinKey, null, numbers, strings, objects, arrays(*), BinData, ObjectId, booleans, dates,
    timestamps, regexes, MaxKey. (*) An array field sorts by its smallest (ascending) or largest (descending) element,
    so only the empty array and a nested array remain arrays here; the empty array sorts before null."""
    shuffled = list(enumerate(FULL_ORDER))
    random.Random(7).shuffle(shuffled)
    db.c.insert_many([{"_id": i, "v": v} for i, v in shuffled])
    asc = ids(db.c.find().sort("v", 1))
    expected = [0, 10] + [i for i in range(1, len(FULL_ORDER)) if i != 10]  # [] just after MinKey
    assert asc == expected
    assert ids(db.c.find().sort("v", -1)) == [19, 18, 17, 16, 15, 14, 13, 12, 11, 9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 0]
    assert ids(db.c.aggregate([{"$sort": {"v": 1}}])) == expected


def test_sort_arrays_null_and_missing(db):
    db.c.insert_many([{"_id": 1, "v": [5, 1]}, {"_id": 2, "v": 3}, {"_id": 3, "v": [2, 9]}, {"_id": 4},
                      {"_id": 5, "v": None}, {"_id": 6, "v": []}, {"_id": 7, "v": ["s", 0]}])
    assert ids(db.c.find().sort([("v", 1), ("_id", 1)])) == [6, 4, 5, 7, 1, 3, 2]
    assert ids(db.c.find().sort([("v", -1), ("_id", 1)])) == [7, 3, 1, 2, 4, 5, 6]
    assert ids(db.c.aggregate([{"$sort": {"v": -1, "_id": 1}}])) == [7, 3, 1, 2, 4, 5, 6]


def test_numbers_compare_exactly_across_types(db):
    big = 2 ** 53
    db.c.insert_many([{"_id": 1, "v": Int64(big + 1)}, {"_id": 2, "v": float(big)}, {"_id": 3, "v": Decimal128("0.1")},
                      {"_id": 4, "v": 0.1}, {"_id": 5, "v": Decimal128(str(big + 2))}])
    assert ids(db.c.find().sort("v", 1)) == [3, 4, 2, 1, 5]  # decimal 0.1 < double 0.1 (0.1000000000000000055...)
    assert ids(db.c.find({"v": {"$gt": float(big)}}).sort("v", 1)) == [1, 5]
    assert ids(db.c.find({"v": {"$gt": Decimal128("0.1")}, "_id": {"$lt": 5}}).sort("v", 1)) == [4, 2, 1]


def test_keyset_pagination_over_mixed_ids_stops_at_the_bracket(mixed):
    """`_id > last` never leaves the bracket of `last`: paging from the first number sees the numbers only, as on a real
    server; paging every bracket from its own start (MinKey-free: one query per type) sees every document."""
    seen, after = [], None
    while True:
        f = {"_id": {"$gt": after}} if after is not None else {}
        page = ids(mixed.find(f).sort("_id", 1).limit(3))
        if not page:
            break
        seen += page
        after = page[-1]
    numbers = [Decimal128("1"), 2, 3, 5.5, 6, 7.25, 8, Decimal128("9.5")]
    assert seen == numbers  # the strings, ObjectId, binary, date, subdocument and booleans are never reached
    everything = []
    for start in (float("-inf"), "", {}, Binary(b"", 0), ObjectId("0" * 24), False, datetime.datetime(1, 1, 1)):
        after = start
        while True:
            page = ids(mixed.find({"_id": {"$gt": after}} if after is not start else {"_id": {"$gte": start}})
                       .sort("_id", 1).limit(2))
            if not page:
                break
            everything += page
            after = page[-1]
    assert len(everything) == len(MIXED) and ids(mixed.find().sort("_id", 1)) == everything


def test_id_index_agrees_with_scan(db):
    rnd = random.Random(11)
    values = set()
    while len(values) < 300:
        values.add(rnd.choice([rnd.randint(-50, 50), rnd.random() * 100 - 50, f"s{rnd.randint(0, 99)}",
                               datetime.datetime(2020, 1, 1, tzinfo=UTC) + datetime.timedelta(days=rnd.randint(0, 99))]))
    db.c.insert_many([{"_id": v, "x": 1} for v in values])
    db.c.delete_many({"_id": {"$in": list(values)[:30]}})
    db.c.insert_many([{"_id": v, "x": 1} for v in list(values)[:10]])
    for _ in range(40):
        lo, hi = rnd.sample(sorted(values, key=str), 2)
        for f in ({"_id": {"$gt": lo}}, {"_id": {"$gte": lo, "$lt": hi}}, {"_id": {"$lte": hi}}):
            fast = ids(db.c.find(f).sort("_id", 1))  # sorted _id index
            slow = ids(db.c.find(f).sort([("_id", 1), ("x", 1)]))  # scan, then sort
            assert fast == slow
            assert ids(db.c.find(f).sort("_id", -1)) == list(reversed(slow))
            assert db.c.count_documents(f) == len(slow)


def test_dotted_paths_and_elem_match_are_bracketed(db):
    db.c.insert_many([{"_id": 1, "a": [1, "x", 7]}, {"_id": 2, "a": ["z"]}, {"_id": 3, "a": [{"b": 6}, {"b": "q"}]},
                      {"_id": 4, "a": {"b": [2, 9]}}, {"_id": 5}])
    q = lambda f: sorted(ids(db.c.find(f)))  # noqa: E731
    assert q({"a.b": {"$gt": 5}}) == [3, 4]
    assert q({"a.b": {"$gt": "a"}}) == [3]
    assert q({"a": {"$elemMatch": {"$gt": 5}}}) == [1]
    assert q({"a": {"$not": {"$gt": 5}}}) == [2, 3, 4, 5]
    assert q({"$or": [{"a": {"$lt": 2}}, {"a": {"$gte": "y"}}]}) == [1, 2]
    assert ids(db.c.find().sort("$natural", -1)) == [5, 4, 3, 2, 1]


def test_type_string_is_not_javascript_code(db):
    # bson's Code is a str subclass; MongoDB's $type "string" (2) never matches code (13).
    from bson.code import Code
    db.codes.insert_many([{"_id": 1}, {"_id": "s"}, {"_id": Code("f()")}])
    assert ids(db.codes.find({"_id": {"$type": "string"}})) == ["s"]
    assert ids(db.codes.find({"_id": {"$type": ["string", "symbol"]}})) == ["s"]
    assert ids(db.codes.find({"_id": {"$type": "javascript"}})) == [Code("f()")]
    assert ids(db.codes.find({"_id": {"$type": 13}})) == [Code("f()")]

"""The _id-hashed store stays fast: new _ids upserted in O(1) each, and keyset pages over _id walk the sorted _id
index (O(log n + page)) instead of scanning and sorting the collection for every page."""
import time

from pymongo import UpdateOne


def test_20000_upserts_of_new_ids_well_under_two_seconds(db):
    ops = [UpdateOne({"_id": i}, {"$set": {"v": i, "s": "x" * 20}}, upsert=True) for i in range(20000)]
    started = time.monotonic()
    result = db.c.bulk_write(ops, ordered=False)
    elapsed = time.monotonic() - started
    assert result.upserted_count == 20000
    assert elapsed < 2.0, f"20,000 upserts took {elapsed:.2f} s"


def test_keyset_pagination_over_100k_ids_is_not_quadratic(db):
    db.c.insert_many([{"_id": i, "v": i} for i in range(100000)])
    started, after, seen = time.monotonic(), None, 0
    while True:
        page = list(db.c.find({"_id": {"$gt": after}} if after is not None else {}).sort("_id", 1).limit(1000))
        if not page:
            break
        seen += len(page)
        after = page[-1]["_id"]
        if seen == 50000:  # a write between pages: the index merges it, it does not rebuild from scratch
            db.c.insert_one({"_id": 100000.5})
    elapsed = time.monotonic() - started
    assert seen == 100001
    assert elapsed < 6.0, f"100 keyset pages over 100k documents took {elapsed:.2f} s"
    started = time.monotonic()
    assert db.c.count_documents({"_id": {"$gte": 25000, "$lt": 75000}}) == 50000
    assert [d["_id"] for d in db.c.find({"_id": {"$lte": 99999}}).sort("_id", -1).limit(2)] == [99999, 99998]
    assert time.monotonic() - started < 2.0

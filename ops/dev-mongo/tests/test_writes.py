"""Write command limits and per-batch outcomes. Reference: MongoDB manual, hello (maxWriteBatchSize,
maxMessageSizeBytes, maxBsonObjectSize), "BSON Document Size" limit, write command replies (n, nModified, upserted,
writeErrors)."""
import socket
import struct

import bson
import pytest
from pymongo.errors import BulkWriteError, OperationFailure

from conftest import commands

MIB = 1024 * 1024


def test_hello_and_build_info_advertise_mongodb_7_limits(client):
    hello = client.admin.command("hello")
    assert hello["maxWriteBatchSize"] == 100000
    assert hello["maxMessageSizeBytes"] == 48000000
    assert hello["maxBsonObjectSize"] == 16777216
    assert hello["maxWireVersion"] == 21 and hello["minWireVersion"] == 0
    info = client.admin.command("buildInfo")
    assert info["version"].startswith("7.0.") and info["versionArray"][:2] == [7, 0]


def test_connection_status_shows_nobody_logged_in(client):
    # As a mongod without authorization: no user, so no privileges to judge.
    status = client.admin.command("connectionStatus", showPrivileges=True)
    assert status["authInfo"] == {"authenticatedUsers": [], "authenticatedUserRoles": [], "authenticatedUserPrivileges": []}
    assert "authenticatedUserPrivileges" not in client.admin.command("connectionStatus")["authInfo"]


def test_write_command_over_max_write_batch_size_is_refused(db):
    for name, field, op in (("insert", "documents", {}), ("update", "updates", {"q": {}, "u": {"$set": {"a": 1}}}),
                            ("delete", "deletes", {"q": {}, "limit": 0})):
        with pytest.raises(OperationFailure) as err:
            db.command({name: "c", field: [op] * 100001})
        assert err.value.code == 16 and err.value.details["codeName"] == "InvalidLength"
        assert err.value.details["errmsg"] == "Write batch sizes must be between 1 and 100000. Got 100001 operations."
        with pytest.raises(OperationFailure) as err:
            db.command({name: "c", field: []})
        assert err.value.code == 16
    assert db.c.count_documents({}) == 0


def test_driver_splits_bulk_over_max_write_batch_size_and_each_batch_answers_for_itself(db, client):
    """101,000 inserts: pymongo sends two insert commands (100,000 + 1,000). A fail point skipping the first insert and
    failing the next shows the batches are separate commands: the first is applied, the second refused whole."""
    before = commands(client, "insert")
    client.admin.command({"configureFailPoint": "failCommand", "mode": {"skip": 1, "times": 1},
                          "data": {"failCommands": ["insert"], "errorCode": 96}})
    with pytest.raises((BulkWriteError, OperationFailure)) as err:
        db.c.insert_many(({"_id": i} for i in range(101000)), ordered=True)
    assert err.value.code == 96
    assert commands(client, "insert") - before == 2
    assert db.c.count_documents({}) == 100000
    assert db.c.find_one(sort=[("_id", -1)])["_id"] == 99999


def test_driver_splits_bulk_over_max_message_size(db, client):
    before = commands(client, "insert")
    docs = [{"_id": i, "pad": "x" * (MIB * 12)} for i in range(5)]  # 60 MB: more than one 48 MB message
    result = db.c.insert_many(docs)
    assert len(result.inserted_ids) == 5
    assert commands(client, "insert") - before >= 2
    assert db.c.count_documents({}) == 5


def test_document_over_16_mib_is_refused_per_document(db):
    big = {"_id": "big", "pad": "x" * (16 * MIB)}
    size = len(bson.encode(big))
    reply = db.command({"insert": "c", "documents": [{"_id": 1}, big, {"_id": 2}], "ordered": False})
    assert reply["n"] == 2
    assert reply["writeErrors"] == [{"index": 1, "code": 2, "errmsg": f"object to insert too large. size in bytes: "
                                                                       f"{size}, max size: 16777216"}]
    reply = db.command({"insert": "c", "documents": [big, {"_id": 3}]})  # ordered: stops at the first error
    assert reply["n"] == 0 and reply["writeErrors"][0]["index"] == 0
    db.c.insert_one({"_id": "grow", "a": "y" * (9 * MIB)})
    reply = db.command({"update": "c", "updates": [{"q": {"_id": "grow"}, "u": {"$set": {"b": "z" * (8 * MIB)}}}]})
    assert reply["n"] == 0 and reply["nModified"] == 0
    assert reply["writeErrors"][0]["code"] == 10334
    assert reply["writeErrors"][0]["errmsg"] == "Resulting document after update is larger than 16777216"
    assert "b" not in db.c.find_one({"_id": "grow"})


def test_message_over_max_message_size_closes_the_connection(uri):
    host, port = uri.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(struct.pack("<iiii", 48000001, 1, 0, 2013))
        assert s.recv(16) == b""  # closed, no reply


def test_each_command_reply_carries_its_own_outcome(db):
    db.c.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    reply = db.command({"update": "c", "ordered": False, "updates": [
        {"q": {"_id": 1}, "u": {"$set": {"v": 1}}},
        {"q": {"_id": 2}, "u": {"$set": {"v": 0}}},  # matched, not modified
        {"q": {"_id": 3}, "u": {"$set": {"v": 3}}, "upsert": True},
        {"q": {"_id": 1, "v": 99}, "u": {"$set": {"v": 4}}, "upsert": True},  # upsert of an existing _id: E11000
        {"q": {"_id": 4}, "u": {"$set": {"v": 4}}, "upsert": True}]})
    assert reply["n"] == 4 and reply["nModified"] == 1
    assert reply["upserted"] == [{"index": 2, "_id": 3}, {"index": 4, "_id": 4}]
    assert [(e["index"], e["code"]) for e in reply["writeErrors"]] == [(3, 11000)]
    reply = db.command({"insert": "c", "documents": [{"_id": 10}, {"_id": 1}, {"_id": 11}]})  # ordered
    assert reply["n"] == 1 and [(e["index"], e["code"]) for e in reply["writeErrors"]] == [(1, 11000)]
    reply = db.command({"delete": "c", "deletes": [{"q": {"_id": {"$gt": 3}}, "limit": 0}, {"q": {"_id": 1}, "limit": 1}]})
    assert reply["n"] == 3  # 4 and 10, then 1
    reply = db.command({"insert": "c", "documents": [{"_id": [1, 2]}]})
    assert reply["n"] == 0 and reply["writeErrors"][0]["code"] == 53  # an array _id: InvalidIdField


def test_bulk_errors_carry_batch_relative_indexes(db, client):
    """Two batches (by count); a duplicate in the second: that command's writeError index is relative to it, and
    pymongo (which offsets it) reports the global index."""
    db.c.insert_one({"_id": 100004})
    with pytest.raises(BulkWriteError) as err:
        db.c.insert_many(({"_id": i} for i in range(100010)), ordered=False)
    details = err.value.details
    assert details["nInserted"] == 100009
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(100004, 11000)]
    reply = db.command({"insert": "c", "ordered": False, "documents": [{"_id": 100003}, {"_id": 100004}]})
    assert [e["index"] for e in reply["writeErrors"]] == [0, 1]


def test_plain_set_upserts_match_the_update_engine(db):
    """Upserts that only $set top-level fields skip mongoeco's update engine: same documents as through it."""
    cases = [({"_id": 1}, {"$set": {"a": 1, "b": {"c": 2}}}),
             ({"_id": 2, "k": "seed", "$or": [{"v": {"$lte": 3}}, {"v": {"$exists": False}}]}, {"$set": {"v": 3}}),
             ({"_id": 3}, {"$set": {"a": 1}, "$setOnInsert": {"created": True}})]
    for q, u in cases:
        db.fast.update_one(q, u, upsert=True)
        slow = {k: dict(v) for k, v in u.items()}
        slow["$inc"] = {"zz": 0}  # any other operator sends the update through the engine
        db.slow.update_one(q, slow, upsert=True)
    for q, u in cases:  # and the same updates applied to the now existing documents
        db.fast.update_one({"_id": q["_id"]}, {"$set": {"a": 9, "new": 1}})
        db.slow.update_one({"_id": q["_id"]}, {"$set": {"a": 9, "new": 1}, "$inc": {"zz": 0}})
    fast = list(db.fast.find().sort("_id", 1))
    slow = [{k: v for k, v in d.items() if k != "zz"} for d in db.slow.find().sort("_id", 1)]
    assert fast == slow and [list(d) for d in fast] == [list(d) for d in slow]
    assert db.fast.update_one({"_id": 1}, {"$set": {}}).modified_count == 0  # allowed since MongoDB 5.0


def test_login_with_unknown_credentials_fails_as_mongod_does(uri):
    # The server has no users. mongod answers a login for a user it does not know with 18 AuthenticationFailed
    # (never CommandNotFound): drivers report it as a failed authentication, which the product maps to exit 3.
    import pymongo
    from pymongo.errors import OperationFailure
    host = uri.split("://", 1)[1].split("/", 1)[0]
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        c = pymongo.MongoClient(f"mongodb://bob:wrong@{host}/?authMechanism={mechanism}", directConnection=True,
                                serverSelectionTimeoutMS=3000)
        try:
            with pytest.raises(OperationFailure) as refused:
                c.admin.command("ping")
            assert refused.value.code == 18, refused.value.details
            assert "Authentication failed" in str(refused.value)
        finally:
            c.close()


def test_unique_secondary_indexes_refuse_duplicates_as_mongod_does(db):
    # MongoDB manual, "Unique Indexes": a duplicate value fails the write with E11000 naming the index; a missing
    # field counts as null (unless the index is sparse); building the index over existing duplicates fails too.
    db.u.create_index("email", unique=True)
    db.u.insert_many([{"_id": 1, "email": "a"}, {"_id": 2, "email": "b"}, {"_id": 3}])
    with pytest.raises(BulkWriteError) as err:
        db.u.insert_many([{"_id": 4, "email": "c"}, {"_id": 5, "email": "a"}, {"_id": 6}], ordered=False)
    errors = err.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 11000), (2, 11000)]
    assert "index: email_1 dup key: { email: " in errors[0]["errmsg"]
    assert errors[0]["keyPattern"] == {"email": 1} and errors[0]["keyValue"] == {"email": "a"}
    with pytest.raises(OperationFailure) as err:
        db.u.replace_one({"_id": 2}, {"email": "a"})
    assert err.value.code == 11000 and "index: email_1" in str(err.value)
    with pytest.raises(OperationFailure):
        db.u.update_one({"_id": 9}, {"$set": {"email": "b"}}, upsert=True)
    db.u.replace_one({"_id": 1}, {"email": "a", "x": 1})  # its own value: no conflict
    db.u.update_one({"_id": 2}, {"$set": {"email": "z"}})
    db.u.insert_one({"_id": 7, "email": "b"})  # freed by the update
    assert sorted(d["_id"] for d in db.u.find({"email": {"$in": ["a", "b", "c", "z"]}})) == [1, 2, 4, 7]
    db.s.create_index("tag", unique=True, sparse=True)
    db.s.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3, "tag": "t"}])
    with pytest.raises(OperationFailure):
        db.s.insert_one({"_id": 4, "tag": "t"})
    db.d.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 1.0}])
    with pytest.raises(OperationFailure) as err:
        db.d.create_index("k", unique=True)
    assert err.value.code == 11000

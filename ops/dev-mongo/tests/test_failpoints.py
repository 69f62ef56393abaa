"""The failCommand fail point, as the drivers' spec tests use it (specifications: "Server Fail Point";
mongod's jstests/core/failcommand_failpoint.js)."""
import threading
import time

import pytest
from bson import Int64
from pymongo import MongoClient
from pymongo.errors import AutoReconnect, OperationFailure, WriteConcernError


def fail(client, mode, **data):
    return client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})


def test_error_code_with_times(client, db):
    reply = fail(client, {"times": 2}, failCommands=["find"], errorCode=2)
    assert reply["ok"] == 1 and "count" in reply
    for _ in range(2):
        with pytest.raises(OperationFailure) as err:
            db.c.find_one()
        assert err.value.code == 2 and err.value.details["codeName"] == "BadValue"
        assert err.value.details["errmsg"] == "Failing command via 'failCommand' failpoint"
    assert db.c.find_one() is None
    assert db.command("ping")["ok"] == 1


def test_skip_and_always_on_and_off(client, db):
    fail(client, {"skip": 2}, failCommands=["ping"], errorCode=91)
    db.command("ping")
    db.command("find", "c")  # commands not in failCommands do not count
    db.command("ping")
    for _ in range(3):
        with pytest.raises(AutoReconnect) as err:  # pymongo's NotPrimaryError: a "node is shutting down" code
            db.command("ping")
        assert err.value.details["code"] == 91 and err.value.details["codeName"] == "ShutdownInProgress"
    fail(client, "off")
    db.command("ping")
    fail(client, "alwaysOn", failCommands=["count"], errorCode=50)
    for _ in range(3):
        with pytest.raises(OperationFailure) as err:
            db.command("count", "c")
        assert err.value.code == 50 and err.value.details["codeName"] == "MaxTimeMSExpired"


def test_close_connection(uri, client, db):
    fail(client, {"times": 1}, failCommands=["find"], closeConnection=True)
    with pytest.raises(AutoReconnect):
        db.c.find_one()
    assert db.c.find_one() is None  # the next command, on a new connection, works


def test_block_connection_delays_only_that_command(client, db):
    fail(client, {"times": 1}, failCommands=["find"], blockConnection=True, blockTimeMS=600)
    other = []
    thread = threading.Thread(target=lambda: (time.sleep(0.1), other.append(time.monotonic()), db.command("ping"),
                                              other.append(time.monotonic())))
    started = time.monotonic()
    thread.start()
    assert db.c.find_one() is None
    elapsed = time.monotonic() - started
    thread.join()
    assert elapsed >= 0.6
    assert other[1] - other[0] < 0.4  # the server kept answering other connections meanwhile
    with pytest.raises(OperationFailure) as err:
        db.command({"configureFailPoint": "failCommand", "mode": "off"})  # admin only
    assert err.value.code == 13


def test_block_then_error(client, db):
    fail(client, {"times": 1}, failCommands=["insert"], blockConnection=True, blockTimeMS=200, errorCode=11600)
    started = time.monotonic()
    with pytest.raises(AutoReconnect):  # InterruptedAtShutdown: pymongo treats it as a state change
        db.c.insert_one({"_id": 1})
    assert time.monotonic() - started >= 0.2
    assert db.c.count_documents({}) == 0


def test_write_concern_error_applies_the_write(client, db):
    fail(client, {"times": 1}, failCommands=["insert", "ping"], writeConcernError={"code": 64, "errmsg": "waiting"})
    db.command("ping")  # ping takes no write concern: it neither fails nor uses up the fail point
    reply = db.command({"insert": "c", "documents": [{"_id": 1}]})
    assert reply["n"] == 1 and reply["writeConcernError"] == {"code": 64, "errmsg": "waiting"}
    assert db.command({"insert": "c", "documents": [{"_id": 2}]}).get("writeConcernError") is None
    fail(client, {"times": 1}, failCommands=["update"], writeConcernError={"code": 91, "errmsg": "down"})
    with pytest.raises(WriteConcernError) as err:
        db.c.update_one({"_id": 1}, {"$set": {"x": 1}})
    assert err.value.code == 91
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "x": 1}


def test_error_labels_default_and_override(client, db):
    fail(client, {"times": 1}, failCommands=["insert"], errorCode=91)
    with pytest.raises(AutoReconnect) as err:
        db.command({"insert": "c", "documents": [{"_id": 1}], "txnNumber": Int64(1)})
    assert err.value.details["errorLabels"] == ["RetryableWriteError"]  # a retryable write's retryable error
    fail(client, {"times": 1}, failCommands=["insert"], errorCode=91, errorLabels=[])
    with pytest.raises(AutoReconnect) as err:
        db.command({"insert": "c", "documents": [{"_id": 1}], "txnNumber": Int64(2)})
    assert "errorLabels" not in err.value.details
    fail(client, {"times": 1}, failCommands=["ping"], errorCode=2, errorLabels=["Foo", "Bar"])
    with pytest.raises(OperationFailure) as err:
        db.command("ping")
    assert err.value.details["errorLabels"] == ["Foo", "Bar"]
    fail(client, {"times": 1}, failCommands=["ping"], errorLabels=["Foo"])  # nothing to fail with: no effect
    assert "errorLabels" not in db.command("ping")


def test_app_name_filter_and_aliases(uri, client, db):
    fail(client, "alwaysOn", failCommands=["find"], errorCode=2, appName="victim")
    assert db.c.find_one() is None
    victim = MongoClient(uri, appname="victim", retryReads=False)
    try:
        with pytest.raises(OperationFailure):
            victim[db.name].c.find_one()
    finally:
        victim.close()
    fail(client, {"times": 1}, failCommands=["isMaster"], errorCode=2)  # hello is the same command
    with pytest.raises(OperationFailure):
        db.command("hello")
    fail(client, {"times": 1}, failCommands=["configureFailPoint"], errorCode=2)  # can't be failed
    fail(client, "off")


def test_namespace_filter(client, db):
    fail(client, "alwaysOn", failCommands=["find"], errorCode=1, namespace=f"{db.name}.foo")
    assert db.bar.find_one() is None
    with pytest.raises(OperationFailure) as err:
        db.foo.find_one()
    assert err.value.code == 1 and err.value.details["codeName"] == "InternalError"


def test_change_stream_get_more_failure_is_resumable(client, db):
    """A failed getMore on a change stream carries ResumableChangeStreamError; pymongo resumes from its token and no
    event is lost or repeated."""
    failed_before = client.admin.command("serverStatus")["metrics"]["commands"].get("getMore", {}).get("failed", 0)
    with db.c.watch(max_await_time_ms=100) as stream:
        db.c.insert_many([{"_id": i} for i in range(1, 4)])
        fail(client, {"times": 1}, failCommands=["getMore"], errorCode=91)
        db.c.insert_many([{"_id": i} for i in range(4, 7)])
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 6 and time.monotonic() < deadline:
            event = stream.try_next()
            if event:
                seen.append(event["documentKey"]["_id"])
        assert seen == [1, 2, 3, 4, 5, 6]
    failed = client.admin.command("serverStatus")["metrics"]["commands"]["getMore"]["failed"]
    assert failed - failed_before == 1
    raw = db.command({"aggregate": "c", "pipeline": [{"$changeStream": {}}], "cursor": {}})
    cid = raw["cursor"]["id"]
    fail(client, {"times": 1}, failCommands=["getMore"], errorCode=89)  # NetworkTimeout
    with pytest.raises(OperationFailure) as err:
        db.command({"getMore": cid, "collection": "c", "maxTimeMS": 10})
    assert err.value.code == 89 and err.value.details["errorLabels"] == ["ResumableChangeStreamError"]
    fail(client, {"times": 1}, failCommands=["getMore"], errorCode=2)
    with pytest.raises(OperationFailure) as err:
        db.command({"getMore": cid, "collection": "c", "maxTimeMS": 10})
    assert "errorLabels" not in err.value.details  # BadValue is not resumable
    db.command({"getMore": cid, "collection": "c", "maxTimeMS": 10})  # the cursor survived both
    fail(client, {"times": 1}, failCommands=["getMore"], closeConnection=True)
    with pytest.raises(AutoReconnect):
        db.command({"getMore": cid, "collection": "c", "maxTimeMS": 10})


def test_invalid_configurations_are_refused(client):
    for mode, data in (({"sometimes": 1}, {"failCommands": ["ping"]}), ("alwaysOn", {"errorCode": 2}),
                       ("alwaysOn", {"failCommands": ["ping"], "blockConnection": True})):
        with pytest.raises(OperationFailure):
            client.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": data})
    with pytest.raises(OperationFailure):
        client.admin.command({"configureFailPoint": "noSuchFailPoint", "mode": "off"})


def test_writes_no_majority_acknowledged_are_hidden_from_majority_reads_and_streams(client, db):
    """stopReplProducer (set on secondaries, mongod's jstests/replsets/rollback_*.js): the primary's new writes are
    read with readConcern local, not with majority, nor by change streams (they return majority-committed events);
    a failover rolls them back (devMongoRollBack) and nothing ever reports them; turned off, they commit."""
    from pymongo.read_concern import ReadConcern
    from pymongo.write_concern import WriteConcern
    db.c.insert_one({"_id": 1})
    with db.c.watch() as stream:
        client.admin.command({"configureFailPoint": "stopReplProducer", "mode": "alwaysOn"})
        with pytest.raises(WriteConcernError):
            db.c.insert_one({"_id": 5})  # the default write concern is majority: no secondary acknowledges
        assert client.admin.command({"devMongoRollBack": 1})["rolledBack"] == 1
        db.c.with_options(write_concern=WriteConcern(w=1)).insert_one({"_id": 2})
        majority = db.get_collection("c", read_concern=ReadConcern("majority"))
        assert [d["_id"] for d in db.c.find().sort("_id", 1)] == [1, 2]
        assert [d["_id"] for d in majority.find().sort("_id", 1).limit(1)] == [1]
        assert [d["_id"] for d in majority.find({"_id": {"$gte": 1}}).sort("_id", 1).limit(2)] == [1]
        assert stream.try_next() is None
        with pytest.raises(OperationFailure):
            db.c.update_one({"_id": 1}, {"$set": {"x": 1}})  # not modelled: refused, not half-done
        assert client.admin.command({"devMongoRollBack": 1})["rolledBack"] == 1
        assert [d["_id"] for d in db.c.find()] == [1]
        db.c.with_options(write_concern=WriteConcern(w=1)).insert_one({"_id": 3})
        client.admin.command({"configureFailPoint": "stopReplProducer", "mode": "off"})
        event = stream.next()
        assert event["operationType"] == "insert" and event["documentKey"] == {"_id": 3}
    assert [d["_id"] for d in db.get_collection("c", read_concern=ReadConcern("majority")).find().sort("_id", 1)] == [1, 3]
    with pytest.raises(OperationFailure):
        db.command({"find": "c", "readConcern": {"level": "sometimes"}})


def test_majority_reads_refused_when_started_without_them():
    """mongod before 5.0 started with --enableMajorityReadConcern false: readConcern majority fails with 148."""
    from conftest import Spawned
    from pymongo.read_concern import ReadConcern
    server = Spawned("--enableMajorityReadConcern", "false")
    try:
        c = MongoClient(server.uri)
        c.t.c.insert_one({"_id": 1})
        assert [d["_id"] for d in c.t.c.find()] == [1]
        with pytest.raises(OperationFailure) as refused:
            list(c.t.get_collection("c", read_concern=ReadConcern("majority")).find())
        assert refused.value.code == 148
        c.close()
    finally:
        server.stop()

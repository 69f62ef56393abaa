"""Change streams: $changeStreamSplitLargeEvent (MongoDB 7.0: events over 16 MB split into fragments, each with its
own resume token; without the stage, BSONObjectTooLarge 10334), and the behaviours the product tails on."""
import time

import pytest
from bson import Timestamp
from pymongo.errors import OperationFailure

MIB = 1024 * 1024
SPLIT = [{"$changeStreamSplitLargeEvent": {}}]


def next_events(stream, n, timeout=10):
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        event = stream.try_next()
        if event is not None:
            out.append(event)
    return out


def make_large_update(db):
    db.c.insert_one({"_id": 1, "a": "a" * (7 * MIB)})
    db.c.update_one({"_id": 1}, {"$set": {"b": "b" * (7 * MIB)}})  # updateDescription 7 MB + fullDocument 14 MB


def test_large_event_is_split_into_fragments_with_their_own_tokens(db):
    with db.c.watch(SPLIT, full_document="updateLookup", max_await_time_ms=100) as stream:
        make_large_update(db)
        insert, first, second = next_events(stream, 3)
        db.c.insert_one({"_id": 2})
        after = next_events(stream, 1)[0]
    assert insert["operationType"] == "insert" and "splitEvent" not in insert  # 7 MB: not split
    assert first["splitEvent"] == {"fragment": 1, "of": 2} and second["splitEvent"] == {"fragment": 2, "of": 2}
    # Most fields (all the small ones) in the first fragment; the big fields each where they fit.
    assert first["operationType"] == "update" and first["documentKey"] == {"_id": 1}
    assert set(first) >= {"_id", "splitEvent", "operationType", "clusterTime", "ns", "documentKey", "updateDescription"}
    assert set(second) == {"_id", "splitEvent", "fullDocument"}
    assert first["updateDescription"]["updatedFields"]["b"] == "b" * (7 * MIB)
    assert len(second["fullDocument"]["a"]) == 7 * MIB and len(second["fullDocument"]["b"]) == 7 * MIB
    assert len({str(first["_id"]), str(second["_id"]), str(after["_id"])}) == 3
    assert str(insert["_id"]) < str(first["_id"]) < str(second["_id"]) < str(after["_id"])
    # Resuming from the first fragment gives the second; from the last fragment, the next event.
    with db.c.watch(SPLIT, full_document="updateLookup", resume_after=first["_id"]) as stream:
        again = next_events(stream, 2)
    assert again[0]["splitEvent"] == {"fragment": 2, "of": 2} and again[0]["_id"] == second["_id"]
    assert again[1]["documentKey"] == {"_id": 2}
    with db.c.watch(SPLIT, full_document="updateLookup", start_after=second["_id"]) as stream:
        assert next_events(stream, 1)[0]["_id"] == after["_id"]
    with pytest.raises(OperationFailure) as err:  # the resumed stream does not split that event (no fullDocument)
        with db.c.watch(SPLIT, resume_after=first["_id"], max_await_time_ms=50) as stream:
            next_events(stream, 1, timeout=1)
    assert err.value.code == 280


def test_large_event_without_the_stage_fails_the_stream(db):
    with db.c.watch(full_document="updateLookup", max_await_time_ms=100) as stream:
        make_large_update(db)
        with pytest.raises(OperationFailure) as err:
            next_events(stream, 2)
    assert err.value.code == 10334 and err.value.details["codeName"] == "BSONObjectTooLarge"
    with db.c.watch(SPLIT, full_document="updateLookup", start_at_operation_time=Timestamp(0, 0)) as stream:
        fragment = [e for e in next_events(stream, 3) if "splitEvent" in e][0]
    with pytest.raises(OperationFailure) as err:  # a fragment's token needs the stage
        with db.c.watch(resume_after=fragment["_id"]) as stream:
            stream.try_next()
    assert err.value.code == 280
    with pytest.raises(OperationFailure):  # only as the last stage
        db.command({"aggregate": "c", "cursor": {}, "pipeline": [{"$changeStream": {}}, *SPLIT, {"$match": {}}]})


def test_resume_after_start_after_and_operation_time(db):
    with db.c.watch(max_await_time_ms=100) as stream:
        db.c.insert_many([{"_id": i} for i in range(3)])
        events = next_events(stream, 3)
        assert stream.resume_token == events[-1]["_id"]
    with db.c.watch(resume_after=events[0]["_id"]) as stream:
        assert [e["documentKey"]["_id"] for e in next_events(stream, 2)] == [1, 2]
    with db.c.watch(start_after=events[1]["_id"]) as stream:
        assert [e["documentKey"]["_id"] for e in next_events(stream, 1)] == [2]
    with db.c.watch(start_at_operation_time=events[1]["clusterTime"]) as stream:
        assert [e["documentKey"]["_id"] for e in next_events(stream, 2)] == [1, 2]


def test_post_batch_resume_token_moves_past_filtered_events(db):
    reply = db.command({"aggregate": "c", "cursor": {}, "pipeline": [{"$changeStream": {}},
                                                                    {"$match": {"operationType": "delete"}}]})
    start = reply["cursor"]["postBatchResumeToken"]
    db.c.insert_many([{"_id": i} for i in range(3)])
    more = db.command({"getMore": reply["cursor"]["id"], "collection": "c", "maxTimeMS": 50})
    assert more["cursor"]["nextBatch"] == []
    assert more["cursor"]["postBatchResumeToken"]["_data"] > start["_data"]


def test_drop_then_invalidate(db):
    db.c.insert_one({"_id": 1})
    with db.c.watch(max_await_time_ms=100) as stream:
        db.c.drop()
        kinds = [e["operationType"] for e in next_events(stream, 2)]
    assert kinds == ["drop", "invalidate"]


def test_invalidate_has_its_own_token_and_only_start_after_passes_it(db):
    db.c.insert_one({"_id": 1})
    with db.c.watch(max_await_time_ms=100) as stream:
        db.c.drop()
        drop, invalidate = next_events(stream, 2)
    assert invalidate["_id"] != drop["_id"] and invalidate["_id"]["_data"] > drop["_id"]["_data"]
    # Resuming after the drop delivers its invalidate again (also when the first batch is empty).
    with db.c.watch(max_await_time_ms=100, start_after=drop["_id"]) as again:
        assert [e["operationType"] for e in next_events(again, 1)] == ["invalidate"]
    with db.c.watch(max_await_time_ms=100, start_after=drop["_id"], batch_size=0) as empty_first:
        assert [e["operationType"] for e in next_events(empty_first, 1)] == ["invalidate"]
    with pytest.raises(OperationFailure) as err:
        with db.c.watch(max_await_time_ms=100, resume_after=invalidate["_id"]) as refused:
            next(refused)
    assert err.value.code == 260
    with db.c.watch(max_await_time_ms=100, start_after=invalidate["_id"]) as after:
        db.c.insert_one({"_id": 2})
        assert [e["operationType"] for e in next_events(after, 1)] == ["insert"]


def test_history_lost_and_data_file_survive_restart(spawn, tmp_path):
    server = spawn("--history", "5", "--data", str(tmp_path / "mongo.data"))
    c = server.client()
    with c.t.c.watch(max_await_time_ms=100) as stream:
        c.t.c.insert_one({"_id": 0})
        token = next_events(stream, 1)[0]["_id"]
    c.t.c.insert_many([{"_id": i} for i in range(1, 10)])
    with pytest.raises(OperationFailure) as err:
        with c.t.c.watch(resume_after=token) as stream:
            stream.try_next()
    assert err.value.code == 286
    with c.t.c.watch(max_await_time_ms=100) as stream:
        c.t.c.insert_one({"_id": 10})
        recent = next_events(stream, 1)[0]["_id"]
    c.close()
    server.stop()
    server.start()
    c = server.client()
    assert c.t.c.count_documents({}) == 11
    assert [d["_id"] for d in c.t.c.find({"_id": {"$gt": 7}}).sort("_id", 1)] == [8, 9, 10]
    with c.t.c.watch(resume_after=recent, max_await_time_ms=100) as stream:
        c.t.c.insert_one({"_id": 11})
        assert next_events(stream, 1)[0]["documentKey"] == {"_id": 11}
    c.close()


def test_an_older_server_refuses_the_split_stage(spawn):
    old = spawn("--server-version", "6.0.5")
    client = old.client()
    assert client.admin.command("buildInfo")["versionArray"][:3] == [6, 0, 5]
    with pytest.raises(OperationFailure) as err:
        with client.t.c.watch(SPLIT, max_await_time_ms=50) as stream:
            stream.try_next()
    assert err.value.code == 40324
    backported = spawn("--server-version", "6.0.9").client()
    with backported.t.c.watch(SPLIT, max_await_time_ms=50) as stream:
        assert stream.try_next() is None



def collection_uuid(db, name):
    return next(db.list_collections(filter={"name": name}))["info"]["uuid"]


def test_rename_reaches_the_source_and_the_target_streams_then_invalidates_both(db):
    db.c.insert_one({"_id": 1})
    db.src.insert_one({"_id": 2})
    before, moved = collection_uuid(db, "c"), collection_uuid(db, "src")
    assert before != moved
    admin = db.client.admin
    with pytest.raises(OperationFailure) as err:
        admin.command("renameCollection", f"{db.name}.src", to=f"{db.name}.c")
    assert err.value.code == 48  # the target exists and dropTarget is not set
    with pytest.raises(OperationFailure) as err:
        db.command("renameCollection", f"{db.name}.src", to=f"{db.name}.c", dropTarget=True)
    assert err.value.code == 13  # only against admin
    with pytest.raises(OperationFailure) as err:
        admin.command("renameCollection", f"{db.name}.missing", to=f"{db.name}.c", dropTarget=True)
    assert err.value.code == 26
    with db.c.watch(max_await_time_ms=100) as target, db.src.watch(max_await_time_ms=100) as source, \
            db.watch(max_await_time_ms=100) as whole:
        admin.command("renameCollection", f"{db.name}.src", to=f"{db.name}.c", dropTarget=True)
        on_source, on_target, on_db = next_events(source, 2), next_events(target, 2), next_events(whole, 1)
        token = on_target[0]["_id"]
    # The same event on both sides (ns: the source, to: the target), each followed by its invalidate; no drop for
    # the replaced target. A database stream sees the rename and goes on.
    for rename, invalidate in (on_source, on_target):
        assert rename["operationType"] == "rename" and rename["ns"] == {"db": db.name, "coll": "src"}
        assert rename["to"] == {"db": db.name, "coll": "c"} and invalidate["operationType"] == "invalidate"
    assert [e["operationType"] for e in on_db] == ["rename"]
    # Resuming the target's stream after the rename delivers its invalidate again.
    with db.c.watch(max_await_time_ms=100, start_after=token) as again:
        assert [e["operationType"] for e in next_events(again, 1)] == ["invalidate"]
    assert sorted(d["_id"] for d in db.c.find()) == [2]
    assert collection_uuid(db, "c") == moved and "src" not in db.list_collection_names()

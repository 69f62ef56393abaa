"""The product's driver, libmongoc 1.23 (Debian's libmongoc-1.0-0), through ctypes: it must still select and use this
server now that it reports MongoDB 7.0 (maxWireVersion 21). Skipped where the library is not installed."""
import ctypes
import ctypes.util
import json
import time

import pytest


def load(name):
    path = ctypes.util.find_library(name)
    if not path:
        pytest.skip(f"lib{name} not installed")
    return ctypes.CDLL(path)


class BsonError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_uint32), ("message", ctypes.c_char * 504)]


@pytest.fixture(scope="module")
def mongoc():
    bson_lib = load("bson-1.0")
    lib = load("mongoc-1.0")
    p, s, b = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_bool
    for name, res, args in (
            ("mongoc_uri_new_with_error", p, [s, p]), ("mongoc_client_new_from_uri", p, [p]),
            ("mongoc_client_set_error_api", b, [p, ctypes.c_int32]), ("mongoc_client_command_simple", b, [p, s, p, p, p, p]),
            ("mongoc_client_get_collection", p, [p, s, s]), ("mongoc_collection_insert_one", b, [p, p, p, p, p]),
            ("mongoc_collection_watch", p, [p, p, p]), ("mongoc_change_stream_next", b, [p, ctypes.POINTER(p)]),
            ("mongoc_change_stream_error_document", b, [p, p, ctypes.POINTER(p)]),
            ("mongoc_change_stream_destroy", None, [p]), ("mongoc_collection_find_with_opts", p, [p, p, p, p]),
            ("mongoc_cursor_next", b, [p, ctypes.POINTER(p)]), ("mongoc_cursor_error", b, [p, p]),
            ("mongoc_cursor_destroy", None, [p]), ("mongoc_collection_destroy", None, [p]),
            ("mongoc_client_destroy", None, [p]), ("mongoc_uri_destroy", None, [p])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    for name, res, args in (("bson_new_from_json", p, [s, ctypes.c_ssize_t, p]), ("bson_new", p, []),
                            ("bson_as_relaxed_extended_json", p, [p, p]), ("bson_free", None, [p]),
                            ("bson_destroy", None, [p])):
        fn = getattr(bson_lib, name)
        fn.restype, fn.argtypes = res, args
    lib.mongoc_init()
    return lib, bson_lib


def test_libmongoc_1_23_connects_and_tails(uri, mongoc, db):
    lib, bl = mongoc
    err = BsonError()

    def doc(obj):
        raw = json.dumps(obj).encode()
        out = bl.bson_new_from_json(raw, len(raw), ctypes.byref(err))
        assert out, err.message
        return out

    def text(ptr):
        c = bl.bson_as_relaxed_extended_json(ptr, None)
        try:
            return json.loads(ctypes.string_at(c).decode())
        finally:
            bl.bson_free(c)

    muri = lib.mongoc_uri_new_with_error((uri + "&serverSelectionTimeoutMS=3000").encode(), ctypes.byref(err))
    client = lib.mongoc_client_new_from_uri(muri)
    lib.mongoc_client_set_error_api(client, 2)
    reply = bl.bson_new()
    assert lib.mongoc_client_command_simple(client, b"admin", doc({"ping": 1}), None, reply, ctypes.byref(err)), \
        err.message.decode()
    coll = lib.mongoc_client_get_collection(client, db.name.encode(), b"c")
    stream = lib.mongoc_collection_watch(coll, doc({"pipeline": [{"$changeStreamSplitLargeEvent": {}}]}),
                                         doc({"maxAwaitTimeMS": 100}))
    for value in (3, 7, "x"):
        assert lib.mongoc_collection_insert_one(coll, doc({"_id": value}), None, None, ctypes.byref(err)), err.message
    events, out = [], ctypes.c_void_p()
    deadline = time.monotonic() + 10
    while len(events) < 3 and time.monotonic() < deadline:
        if lib.mongoc_change_stream_next(stream, ctypes.byref(out)):
            events.append(text(out)["documentKey"]["_id"])
        assert not lib.mongoc_change_stream_error_document(stream, ctypes.byref(err), None), err.message
    assert events == [3, 7, "x"]
    cursor = lib.mongoc_collection_find_with_opts(coll, doc({"_id": {"$gt": 5}}), doc({"sort": {"_id": 1}}), None)
    found = []
    while lib.mongoc_cursor_next(cursor, ctypes.byref(out)):
        found.append(text(out)["_id"])
    assert not lib.mongoc_cursor_error(cursor, ctypes.byref(err)), err.message
    assert found == [7]
    lib.mongoc_cursor_destroy(cursor)
    lib.mongoc_change_stream_destroy(stream)
    lib.mongoc_collection_destroy(coll)
    lib.mongoc_client_destroy(client)
    lib.mongoc_uri_destroy(muri)

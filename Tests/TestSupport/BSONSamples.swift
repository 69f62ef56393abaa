import BSON

/// One value of every BSON type, for round trips through bytes, the spool and the server.
public enum BSONSamples {
    public static let everyType: [(String, BSON)] = [
        ("double", .double(3.25)),
        ("nan", .double(.nan)),
        ("string", .string("héllo wörld ✓")),
        ("document", .document(["a": 1, "b": .document(["c": "deep"])])),
        ("array", .array([1, "two", .array([.bool(true)]), .null])),
        ("binary", .binary(BSONBinary(subtype: 0, data: [0, 1, 2, 255]))),
        ("uuid", .binary(BSONBinary(subtype: 4, data: Array(repeating: 0xAB, count: 16)))),
        ("undefined", .undefined),
        ("objectId", .objectId(ObjectId(hex: "65a1b2c3d4e5f60718293a4b")!)),
        ("true", .bool(true)),
        ("date", .datetime(1_717_200_011_987)),
        ("preEpoch", .datetime(-86_400_000)),
        ("null", .null),
        ("regex", .regex(pattern: "^a.*z$", options: "i")),
        ("int32", .int32(-2_147_483_648)),
        ("timestamp", .timestamp(BSONTimestamp(seconds: 1_795_302_830, increment: 78))),
        ("int64Big", .int64(9_007_199_254_740_993)),
        ("decimal", .decimal128(Decimal128("12345.678900")!)),
        ("minKey", .minKey),
        ("maxKey", .maxKey),
    ]
}

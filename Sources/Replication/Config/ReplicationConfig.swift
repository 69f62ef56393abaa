/// The whole configuration, as loaded by the executable (docs/CONFIG.md). Plain values with documented defaults;
/// the engine never reads files, arguments or the environment itself.
public struct ReplicationConfig: Sendable {
    /// State directory: `state.db`, `spool/`, `deadletter/`. Default `./.mongoshift`.
    /// This worker's local directory: spool, dead letters, worker identity — and the SQLite state store unless
    /// `stateURL` is set.
    public var stateDirectory: String = "./.mongoshift"
    /// `state: postgresql://…`: the state store in PostgreSQL, shared by several workers (leases, partition claims).
    public var stateURL: String?
    /// How long a stream's lease lasts without a heartbeat before another worker may take the stream over.
    public var leaseDuration: Duration = .seconds(15)
    public var redshift: RedshiftEndpoint?
    public var mongo: MongoEndpoint?
    public var defaults = StreamDefaults()
    public var streams: [StreamConfig] = []

    public init() {}

    public func stream(named name: String) -> StreamConfig? { streams.first { $0.name == name } }
}

public enum SQLDialect: String, Sendable {
    /// Only constructs Amazon Redshift accepts (no ON CONFLICT, no COPY FROM STDIN, SUPER for nested values).
    case redshift
    /// PostgreSQL: jsonb, COPY FROM STDIN.
    case postgres
}

public struct RedshiftEndpoint: Sendable {
    /// libpq URI or conninfo. May carry a password: never log it unredacted.
    public var url: String
    public var dialect: SQLDialect = .redshift
    /// Where COPY loads and UNLOAD snapshots are staged (Redshift dialect only); nil = no S3.
    public var s3: S3Staging?
    /// PostgreSQL: the zone `timestamp` (no time zone) watermarks are stamped in (an IANA name); nil = the
    /// server's `TimeZone` (docs/CONFIG.md, "Time zones").
    public var timeZone: String?
    public init(url: String, dialect: SQLDialect = .redshift, s3: S3Staging? = nil) {
        self.url = url
        self.dialect = dialect
        self.s3 = s3
    }
}

/// The S3 bucket and prefix Redshift's COPY reads and UNLOAD writes (docs/CONFIG.md, "S3 staging").
public struct S3Staging: Sendable {
    public var bucket: String
    /// Key prefix for everything mongoshift stages (`<prefix><stream>/load/…`, `…/unload/…`). Default `mongoshift/`.
    public var prefix: String = "mongoshift/"
    /// The bucket's region (signing, and COPY's REGION). Default `AWS_REGION`, else us-east-1 (the executable
    /// fills it in).
    public var region: String = "us-east-1"
    /// A non-AWS endpoint (`http(s)://host:port`: an emulator, a VPC endpoint); nil = AWS.
    public var endpoint: String?
    /// The role Redshift assumes to read and write the bucket (`arn:aws:iam::…:role/…` or `default`). Without
    /// it, COPY and UNLOAD carry the client's own credentials (temporary ones included).
    public var iamRole: String?
    /// A named profile of the shared AWS files instead of the standard chain.
    public var profile: String?

    public init(bucket: String) { self.bucket = bucket }
}

/// How Mongo → Redshift batches reach the table (Redshift dialect): `copy` stages zstd files in S3 and runs
/// `COPY … FROM 's3://…'`; `insert` sends multi-row INSERTs. PostgreSQL always streams `COPY FROM STDIN`.
public enum LoadMethod: String, Sendable { case copy, insert }

/// How Redshift → Mongo snapshots read the table: `unload` runs one `UNLOAD` per partition into S3 and reads the
/// files; `select` reads keyset pages; `auto` unloads tables of at least `unload_min_rows` rows when S3 is
/// configured. Tails always poll with SELECT.
public enum ExtractMethod: String, Sendable { case auto, unload, select }

public struct MongoEndpoint: Sendable {
    public var url: String
    public var database: String
    public init(url: String, database: String) {
        self.url = url
        self.database = database
    }
}

public struct StreamDefaults: Sendable {
    /// Target uncompressed size of one page / spool segment / apply batch. Default 8 MiB.
    public var batchBytes = 8 << 20
    /// Upper bound on buffers held by one stream's pipeline. Default 256 MiB.
    public var memoryBudget = 256 << 20
    /// Pause between polls when the source had nothing new. Default 1 s.
    public var pollInterval: Duration = .seconds(1)
    /// Concurrent snapshot partitions (each one source connection). Default 2.
    public var parallelism = 2
    /// Spool size at which extraction pauses until the applier catches up. Default 10 GiB.
    public var spoolMaxBytes = 10 << 30
    /// nil = `copy` when `redshift.s3` is set (Redshift dialect), else `insert`.
    public var load: LoadMethod?
    /// Default `auto`.
    public var extract: ExtractMethod = .auto
    /// `extract: auto` unloads tables with at least this many rows (the catalog's estimate). Default 1,000,000.
    public var unloadMinRows = 1_000_000
    public init() {}
}

public struct TableName: Sendable, Hashable, CustomStringConvertible {
    public var schema: String?
    public var name: String
    public init(schema: String?, name: String) {
        self.schema = schema
        self.name = name
    }
    /// `public.orders` → schema `public`, name `orders`; a bare name has no schema. Names are taken exactly as
    /// written (case kept); a part that holds a dot is written in double quotes, `""` standing for a quote:
    /// `"sales.eu"."Order ""Items"""`.
    public init(parsing text: String) {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { current.append("\""); chars = chars.dropFirst() } else { quoted = false }
                } else {
                    current.append(c)
                }
            } else if c == "\"" && current.isEmpty {
                quoted = true
            } else if c == "." && parts.isEmpty {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        if parts.count == 2 {
            schema = parts[0]
            name = parts[1]
        } else {
            schema = nil
            name = parts[0]
        }
    }
    public var description: String { schema.map { "\($0).\(name)" } ?? name }
}

public enum OnHistoryLost: String, Sendable { case resnapshot, fail }

/// How far behind its watermark a stream re-reads each poll interval (late commits that slipped past every bound).
public enum Lookback: Sendable, Equatable {
    case off
    /// Time watermarks: `lookback: 10m`.
    case duration(Duration)
    /// Integer watermarks: `lookback: 5000` (watermark units).
    case units(Int64)
}
public enum OnDrop: String, Sendable { case keep, truncate, fail }

public struct StreamConfig: Sendable {
    public enum Direction: String, Sendable {
        case redshiftToMongo = "redshift_to_mongo"
        case mongoToRedshift = "mongo_to_redshift"
    }

    public var name: String
    public var direction: Direction
    /// Redshift → Mongo: source table; Mongo → Redshift: target table.
    public var table: TableName
    /// Redshift → Mongo: target collection; Mongo → Redshift: source collection.
    public var collection: String
    /// Key columns; become `_id` (composite → subdocument). Required unless declared on the table.
    public var key: [String] = []
    /// Monotone-ish column polled incrementally (Redshift → Mongo).
    public var watermark: String?
    /// Never advance the watermark past `now() - safetyLag` (late commits). Default 60 s.
    public var safetyLag: Duration = .seconds(60)
    /// Re-read this far behind the watermark every poll interval (off by default): a duration for time
    /// watermarks, a number of units for integer ones.
    public var lookback: Lookback = .off
    /// Soft-delete column: a true value deletes the document.
    public var deleteColumn: String?
    /// Hard-delete reconcile period (0 = off). Default 1 h.
    public var reconcileEvery: Duration = .seconds(3600)
    /// Hard-delete reconcile guard: a cycle that finds more than this fraction of the target's documents missing
    /// at the source deletes nothing (and says so). Default 0.10.
    public var maxDeleteRatio = 0.10
    /// A document is deleted only when found missing on two reconcile cycles at least this far apart. Default 0 s:
    /// two cycles, `reconcile_every` apart.
    public var deleteGrace: Duration = .zero
    /// Redshift → Mongo `where:`: a SQL predicate on the source table; only rows matching it reach Mongo, and a
    /// row that stops matching is deleted there.
    public var filter: String?
    /// Mongo → Redshift `match:`: only documents matching it reach the table; one that stops matching is deleted.
    public var match: MatchFilter?
    /// `columns: {include, exclude, rename}`: which columns / fields reach the target, under which names.
    public var columns = FieldMapping.identity
    /// Redshift → Mongo: at most this many write operations per second on the target (shared clusters, Cosmos
    /// DB's Mongo API); nil = no limit.
    public var maxWritesPerSecond: Int?
    /// How long a delete's tombstone refuses older upserts of its key (Redshift → Mongo). Default 168 h (7 days):
    /// far longer than a stalled worker's lease or an applied backlog.
    public var tombstoneRetention: Duration = .seconds(7 * 24 * 3600)
    /// Snapshot partitions. Default 8.
    public var partitions = 8
    /// Mongo → Redshift: flatten depth (top-level fields → columns). Default 1.
    public var flatten = 1
    public var onHistoryLost: OnHistoryLost = .resnapshot
    public var onDrop: OnDrop = .keep
    public var batchBytes: Int
    public var pollInterval: Duration
    public var parallelism: Int
    public var memoryBudget: Int
    public var spoolMaxBytes: Int
    /// Mongo → Redshift load method; nil = decided by the endpoint (`copy` with S3 in Redshift dialect).
    public var load: LoadMethod?
    public var extract: ExtractMethod
    public var unloadMinRows: Int

    /// The page / segment size actually used: `batch_bytes`, shrunk so that every buffer the stream holds at once
    /// (a page and its compressed copy per snapshot worker, plus the segment being applied) fits `memory_budget`.
    public var pageBytes: Int {
        max(64 << 10, min(batchBytes, memoryBudget / (4 * (parallelism + 1))))
    }

    public init(name: String, direction: Direction, table: TableName, collection: String, defaults: StreamDefaults) {
        self.name = name
        self.direction = direction
        self.table = table
        self.collection = collection
        batchBytes = defaults.batchBytes
        pollInterval = defaults.pollInterval
        parallelism = defaults.parallelism
        memoryBudget = defaults.memoryBudget
        spoolMaxBytes = defaults.spoolMaxBytes
        load = defaults.load
        extract = defaults.extract
        unloadMinRows = defaults.unloadMinRows
    }

    /// The load method in effect against `endpoint`.
    public func loadMethod(_ endpoint: RedshiftEndpoint) -> LoadMethod {
        if endpoint.dialect == .postgres { return .insert }
        return load ?? (endpoint.s3 != nil ? .copy : .insert)
    }
}

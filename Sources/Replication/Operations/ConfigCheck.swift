import BSON
import Foundation
import Logging
import MongoClient
import PostgresClient

/// `mongoshift check`: every problem in one pass, one line each, naming the stream (or server) it concerns.
public struct ConfigCheck: Sendable {
    public struct Problem: Sendable, CustomStringConvertible {
        /// A stream name, or `redshift` / `mongo` for server-wide problems.
        public var subject: String
        public var message: String
        public var description: String { "\(subject): \(message)" }

        public init(subject: String, message: String) {
            (self.subject, self.message) = (subject, message)
        }
    }

    let config: ReplicationConfig
    let streams: [StreamConfig]
    /// The oplog window below which a Mongo → Redshift stream is at risk after an outage.
    public var minimumOplogWindow: Duration = .seconds(24 * 3600)

    public init(config: ReplicationConfig, streams: [StreamConfig]) {
        self.config = config
        self.streams = streams
    }

    public func run() async -> [Problem] {
        var problems: [Problem] = []
        var pg: PostgresConnection?
        var mongo: MongoClient?
        var privileges: MongoPrivileges?
        if let redshift = config.redshift {
            do { pg = try await PostgresConnection.connect(redshift.url, connectTimeoutSeconds: 5) } catch {
                problems.append(Problem(subject: "redshift", message: "cannot connect: \(error)"))
            }
        }
        if let endpoint = config.mongo {
            do {
                let client = try await MongoClient.connect(url: endpoint.url)
                let hello = try await client.command(["hello": 1], database: "admin")
                mongo = client
                // Only with a user logged in: without authorization everything is allowed.
                let status = try? await client.command(["connectionStatus": 1, "showPrivileges": true], database: "admin")
                privileges = status.flatMap(MongoPrivileges.init(connectionStatus:))
                if streams.contains(where: { $0.direction == .mongoToRedshift }) {
                    if !Self.servesChangeStreams(hello: hello) {
                        problems.append(Problem(subject: "mongo", message: "not a replica set: change streams need one (Mongo → Redshift streams cannot run)"))
                    } else if let window = await ClusterClock.oplogWindow(client), window < minimumOplogWindow {
                        problems.append(Problem(subject: "mongo", message: "oplog window is \(Int(window.seconds)) s, shorter than \(Int(minimumOplogWindow.seconds)) s: an outage longer than that loses change-stream history"))
                    }
                }
            } catch {
                problems.append(Problem(subject: "mongo", message: "cannot connect: \(error)"))
            }
        }
        if S3Probe.needsS3(streams, config.redshift), let staging = config.redshift?.s3 {
            do {
                try await S3Probe.bucketAccess(staging)
                if let pg { try await S3Probe.redshiftReads(staging, on: pg) }
            } catch {
                problems.append(Problem(subject: "s3", message: "\(error)"))
            }
        }
        for stream in streams {
            if let privileges, let database = config.mongo?.database {
                problems += privileges.problems(for: stream, database: database, tombstones: Tombstones.collectionName)
                    .map { Problem(subject: stream.name, message: $0) }
            }
            switch stream.direction {
            case .redshiftToMongo:
                if let pg { problems += await checkSourceTable(stream, pg) }
            case .mongoToRedshift:
                if let mongo, let database = config.mongo?.database { problems += await checkCollection(stream, mongo, database) }
                if let pg { problems += await checkTargetTable(stream, pg) }
            }
        }
        return problems
    }

    func checkSourceTable(_ stream: StreamConfig, _ pg: PostgresConnection) async -> [Problem] {
        var problems: [Problem] = []
        func problem(_ message: String) { problems.append(Problem(subject: stream.name, message: message)) }
        let table: SourceTable
        do {
            table = try await SourceTable.describe(pg, stream: stream, dialect: config.redshift?.dialect ?? .postgres)
        } catch let error as ReplicationError {
            problem(error.message)
            // Keep checking the columns we can still see.
            if let columns = try? await pg.query("SELECT * FROM \(SQL.qualified(schema: stream.table.schema, name: stream.table.name)) LIMIT 0").columns {
                let names = Set(columns.map(\.name))
                if let w = stream.watermark, !names.contains(w), !error.message.contains("\"\(w)\"") { problem("watermark column \"\(w)\" not found in \(stream.table)") }
            }
            return problems
        } catch {
            problem("cannot read \(stream.table): \(error)")
            return problems
        }
        let qualified = table.qualifiedName
        if let r = try? await pg.query("SELECT has_table_privilege($1, 'SELECT')", [stream.table.description]).rows.first?.first, r == "f" {
            problem("no SELECT privilege on \(stream.table)")
        }
        let keys = table.keyNames.map(SQL.identifier).joined(separator: ", ")
        if let dup = try? await pg.query("SELECT count(*) FROM (SELECT \(keys) FROM (SELECT \(keys) FROM \(qualified) LIMIT 100000) s GROUP BY \(keys) HAVING count(*) > 1) d").rows.first?.first,
           let n = Int(dup ?? "0"), n > 0 {
            problem("key (\(table.keyNames.joined(separator: ", "))) is not unique: \(n) duplicated values in a 100,000-row sample")
        }
        if let w = table.watermarkName {
            do {
                if try await !isIndexedOrSorted(pg, table: stream.table, column: w) {
                    problem("watermark column \"\(w)\" has no index / sort key: every poll scans the table")
                }
            } catch {
                problem("cannot tell whether watermark column \"\(w)\" has an index / sort key: \(error)")
            }
        }
        if let w = table.watermarkName,
           let nulls = try? await pg.query("SELECT count(*) FROM \(qualified) WHERE \(SQL.identifier(w)) IS NULL").rows.first?.first, let n = Int(nulls ?? "0"), n > 0 {
            problem("\(n) rows have a NULL watermark (\(w)): they are copied by the snapshot but never tailed")
        }
        // A `timestamp` watermark without `time_zone` reads stamps in the session's default zone: one set for this
        // login or database (ALTER ROLE/DATABASE … SET TimeZone) need not be the zone the writers stamp in.
        if table.watermarkKind == .time(withTimeZone: false), config.redshift?.timeZone == nil, config.redshift?.dialect != .redshift,
           let own = try? await pg.query("""
               SELECT s FROM pg_db_role_setting r, unnest(r.setconfig) s
               WHERE lower(s) LIKE 'timezone=%' AND NOT (r.setrole = 0 AND r.setdatabase = 0)
                 AND r.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
                 AND r.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
               """).rows.first?.first ?? nil {
            problem("watermark \"\(table.watermarkName ?? "")\" is a timestamp without time zone, read in this login's or database's own \(own): "
                    + "if the writers stamp in another zone, set redshift.time_zone to theirs")
        }
        if table.watermarkKind == .time(withTimeZone: false), let zone = config.redshift?.timeZone {
            do {
                _ = try await pg.query("SELECT CAST(now() AT TIME ZONE CAST($1 AS text) AS varchar)", [zone])
            } catch {
                problem("redshift.time_zone \(zone) is not a time zone the server knows (\((error as? PostgresError)?.message ?? "\(error)"))")
            }
        }
        if table.watermarkKind != nil {
            let dialect = config.redshift?.dialect ?? .postgres
            if let (visible, grant) = try? await TransactionHorizon.visibility(pg, dialect: dialect), !visible {
                problem("open transactions of other logins are not visible: a commit later than safety_lag (\(Int(stream.safetyLag.seconds)) s) can be missed; to hold the watermark behind them: \(grant)")
            }
            if let horizon = try? await TransactionHorizon.probe(pg, dialect: dialect, table: stream.table, maxOf: nil),
               let writer = horizon.oldestWriter, Double(horizon.now - writer.start) / 1_000_000 >= stream.safetyLag.seconds {
                problem("an open transaction writing \(stream.table) (\(writer), open \((horizon.now - writer.start) / 1_000_000) s) holds the watermark back until it ends")
            }
        }
        // `extract: auto` decides by svv_table_info, which only superusers (or a grant) may read.
        if config.redshift?.dialect == .redshift, config.redshift?.s3 != nil, stream.extract == .auto {
            do {
                _ = try await pg.query("SELECT CAST(tbl_rows AS bigint) FROM svv_table_info WHERE \"schema\" = $1 AND \"table\" = $2",
                                       [await SourceCatalog.schema(of: stream.table, on: pg, dialect: .redshift), stream.table.name.lowercased()])
            } catch {
                problem("cannot read svv_table_info, so `extract: auto` cannot size the table and snapshots it by SELECT: GRANT SELECT ON svv_table_info TO the login, or set `extract: unload`")
            }
        }
        return problems
    }

    /// A replica set member names its set; mongos answers `msg: "isdbgrid"` (a sharded cluster, whose shards are
    /// replica sets): both serve change streams. A standalone server does neither.
    static func servesChangeStreams(hello: Document) -> Bool {
        hello["setName"] != nil || hello["msg"] == .string("isdbgrid")
    }

    /// PostgreSQL: an index whose first column is it; Redshift: a sort key on it (`pg_table_def.sortkey`; that
    /// view lists only schemas on the search_path, so the table's schema is put there for the query). Throws when
    /// the catalog cannot be read: that is reported, not taken as "fine".
    func isIndexedOrSorted(_ pg: PostgresConnection, table: TableName, column: String) async throws -> Bool {
        let schema = await SourceCatalog.schema(of: table, on: pg, dialect: config.redshift?.dialect ?? .postgres)
        switch config.redshift?.dialect ?? .postgres {
        case .postgres:
            let n = try await pg.query("""
                SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
                """, [schema, table.name, column]).rows.first?.first ?? nil
            return (Int(n ?? "0") ?? 0) > 0
        case .redshift:
            let previous = try await pg.query("SHOW search_path").rows.first?.first ?? nil
            try await pg.execute("SET search_path TO \(SQL.identifier(schema))")
            let n: Result<String?, Error>
            do {
                n = .success(try await pg.query("SELECT count(*) FROM pg_table_def WHERE schemaname = $1 AND tablename = $2 AND \"column\" = $3 AND sortkey <> 0",
                                                [schema, table.name, column]).rows.first?.first ?? nil)
            } catch {
                n = .failure(error)
            }
            try await pg.execute("SET search_path TO \(previous ?? "\"$user\", public")")
            return (Int(try n.get() ?? "0") ?? 0) > 0
        }
    }

    func checkCollection(_ stream: StreamConfig, _ mongo: MongoClient, _ database: String) async -> [Problem] {
        do {
            // Only the collections this login holds privileges on: no `listCollections` action needed.
            let reply = try await mongo.command(["listCollections": 1, "filter": .document(["name": .string(stream.collection)]),
                                                 "nameOnly": true, "authorizedCollections": true], database: database)
            if case .array(let batch)? = reply.value(at: "cursor.firstBatch"), batch.isEmpty {
                return [Problem(subject: stream.name, message: "collection \(database).\(stream.collection) not found (or not visible to this login)")]
            }
        } catch {
            return [Problem(subject: stream.name, message: "cannot list collections of \(database): \(error)")]
        }
        return []
    }

    func checkTargetTable(_ stream: StreamConfig, _ pg: PostgresConnection) async -> [Problem] {
        let schema = stream.table.schema ?? "public"
        let exists = (try? await pg.query("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                                          [schema, stream.table.name]).rows.first?.first ?? "0") ?? "0"
        if exists != "0" {
            if let ok = try? await pg.query("SELECT has_table_privilege($1, 'INSERT') AND has_table_privilege($1, 'DELETE')", [stream.table.description]).rows.first?.first, ok == "f" {
                return [Problem(subject: stream.name, message: "no INSERT/DELETE privilege on target \(stream.table)")]
            }
            return []
        }
        let schemaExists = (try? await pg.query("SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", [schema]).rows.first?.first ?? "0") ?? "0"
        let privilege = schemaExists == "0" ? "SELECT has_database_privilege(current_database(), 'CREATE')" : "SELECT has_schema_privilege($1, 'CREATE')"
        let params: [String?] = schemaExists == "0" ? [] : [schema]
        if let ok = try? await pg.query(privilege, params).rows.first?.first, ok == "f" {
            return [Problem(subject: stream.name, message: "cannot create target \(stream.table): no CREATE privilege on \(schemaExists == "0" ? "the database" : "schema \(schema)")")]
        }
        return []
    }
}

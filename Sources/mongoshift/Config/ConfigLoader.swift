import BSON
import Foundation
import Replication
import Yams

/// Reads the YAML configuration (docs/CONFIG.md) into `ReplicationConfig`. Every problem is one line naming the file
/// and line: unknown or duplicate keys, wrong types, bad durations and sizes, missing required keys, unset
/// `${VAR}`s. Secrets only arrive through `${VAR}` and are never echoed in errors.
struct ConfigLoader {
    let file: String
    let environment: [String: String]

    init(file: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.file = file
        self.environment = environment
    }

    func load() throws -> ReplicationConfig {
        let data = try readFile()
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, line: nil, message: "not valid UTF-8")
        }
        return try parse(text)
    }

    /// The file's bytes, or an error that says why not (`No such file or directory`, `Permission denied`, …).
    private func readFile() throws -> Data {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw unreadable(errno) }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw unreadable(errno)
            }
            if n == 0 { return data }
            data.append(contentsOf: buffer[..<n])
        }
    }

    private func unreadable(_ code: Int32) -> ConfigError {
        ConfigError(file: file, line: nil, message: "cannot read the file: \(String(cString: strerror(code)))")
    }

    func parse(_ text: String) throws -> ReplicationConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw ConfigError(file: file, line: nil, message: "the file is empty") }
            root = node
        } catch let error as YamlError {
            throw yamlError(error)
        }
        try checkVariablesAreSet(root)
        let top = try mapping(root, "the top level", allowed: ["state", "local_dir", "lease", "redshift", "mongo", "defaults", "streams"])
        var config = ReplicationConfig()
        if let state = top["state"] {
            let value = try string(state, "state")
            if value.hasPrefix("postgresql://") || value.hasPrefix("postgres://") {
                config.stateURL = value
                guard top["local_dir"] != nil else { throw located(state, "a PostgreSQL `state:` needs `local_dir:` (this worker's spool and dead letters)") }
            } else {
                config.stateDirectory = value
            }
        }
        if let dir = top["local_dir"] {
            guard config.stateURL != nil else { throw located(dir, "`local_dir:` goes with a PostgreSQL `state:`; a directory `state:` holds everything") }
            config.stateDirectory = try string(dir, "local_dir")
        }
        if let lease = top["lease"] { config.leaseDuration = try duration(lease, "lease", atLeast: Self.minimumLease) }
        if let node = top["redshift"] {
            let m = try mapping(node, "redshift", allowed: ["url", "dialect", "s3", "time_zone"])
            let url = try string(try require(m, "url", in: node, "redshift"), "redshift.url")
            var endpoint = RedshiftEndpoint(url: url)
            if let d = m["dialect"] {
                guard let dialect = SQLDialect(rawValue: try string(d, "redshift.dialect")) else {
                    throw located(d, "redshift.dialect must be redshift or postgres")
                }
                endpoint.dialect = dialect
            }
            if let s3 = m["s3"] {
                guard endpoint.dialect == .redshift else {
                    throw located(s3, "redshift.s3 is for dialect redshift (PostgreSQL loads with COPY FROM STDIN and reads with SELECT)")
                }
                endpoint.s3 = try parseS3(s3)
            }
            if let z = m["time_zone"] {
                guard endpoint.dialect == .postgres else {
                    throw located(z, "redshift.time_zone is for dialect postgres (Redshift's timestamp watermarks hold UTC)")
                }
                let zone = try string(z, "redshift.time_zone")
                guard !zone.isEmpty, zone.allSatisfy({ $0.isLetter || $0.isNumber || "/_+-:".contains($0) }) else {
                    throw located(z, "redshift.time_zone must be a time zone name such as Europe/Berlin, not \(zone)")
                }
                endpoint.timeZone = zone
            }
            config.redshift = endpoint
        }
        if let node = top["mongo"] {
            let m = try mapping(node, "mongo", allowed: ["url", "database"])
            config.mongo = MongoEndpoint(url: try string(try require(m, "url", in: node, "mongo"), "mongo.url"),
                                         database: try string(try require(m, "database", in: node, "mongo"), "mongo.database"))
        }
        if let node = top["defaults"] {
            let m = try mapping(node, "defaults", allowed: ["batch_bytes", "memory_budget", "poll_interval", "parallelism", "spool_max_bytes",
                                                             "load", "extract", "unload_min_rows"])
            if let v = m["load"] { config.defaults.load = try loadMethod(v, "defaults.load") }
            if let v = m["extract"] { config.defaults.extract = try extractMethod(v, "defaults.extract") }
            if let v = m["unload_min_rows"] { config.defaults.unloadMinRows = try integer(v, "defaults.unload_min_rows", min: 0, max: Int.max) }
            if let v = m["batch_bytes"] { config.defaults.batchBytes = try size(v, "defaults.batch_bytes") }
            if let v = m["memory_budget"] { config.defaults.memoryBudget = try size(v, "defaults.memory_budget") }
            if let v = m["poll_interval"] { config.defaults.pollInterval = try duration(v, "defaults.poll_interval", atLeast: Self.minimumPollInterval) }
            if let v = m["parallelism"] { config.defaults.parallelism = try integer(v, "defaults.parallelism", min: 1, max: 64) }
            if let v = m["spool_max_bytes"] { config.defaults.spoolMaxBytes = try size(v, "defaults.spool_max_bytes") }
        }
        if let node = top["streams"] {
            guard case .sequence(let seq) = node else { throw located(node, "streams must be a list") }
            var seen: [String: Int] = [:]
            var folders: [String: (name: String, line: Int)] = [:]
            var targets: [String: (name: String, line: Int)] = [:]
            for item in seq {
                let stream = try parseStream(item, config: config)
                if let first = seen[stream.name] {
                    throw located(item, "duplicate stream name \"\(stream.name)\" (first defined at line \(first))")
                }
                let folder = S3Stage.folder(stream.name)
                if let other = folders[folder] {
                    throw located(item, "streams \"\(stream.name)\" and \"\(other.name)\" (line \(other.line)) would share S3 staging "
                                  + "\"\(folder)/\" and local UNLOAD files: rename one (names are compared in lower case, other characters as '_')")
                }
                // One stream per target: a re-snapshot removes the target's rows (documents) it did not write
                // itself, and the schema, checkpoints and reconcile are per target — a second stream's rows
                // would be deleted.
                var target = stream.direction == .mongoToRedshift
                    ? "table \(stream.table.schema ?? "public").\(stream.table.name)" : "collection \(stream.collection)"
                if stream.direction == .mongoToRedshift && config.redshift?.dialect == .redshift { target = target.lowercased() }
                if let other = targets[target] {
                    throw located(item, "streams \"\(stream.name)\" and \"\(other.name)\" (line \(other.line)) both write \(target): "
                                  + "one stream per target (a re-snapshot of one would delete the other's rows)")
                }
                targets[target] = (stream.name, item.mark?.line ?? 0)
                seen[stream.name] = (item.mark?.line ?? 0)
                folders[folder] = (stream.name, item.mark?.line ?? 0)
                config.streams.append(stream)
            }
        }
        if config.redshift?.dialect == .redshift {
            // Redshift folds identifiers to lower case, quoted ones too (`enable_case_sensitive_identifier` off, its
            // default): `Orders` is `orders` in the catalog, where mongoshift looks it up (docs/CONFIG.md).
            for i in config.streams.indices {
                let table = config.streams[i].table
                config.streams[i].table = TableName(schema: table.schema?.lowercased(), name: table.name.lowercased())
            }
        }
        for stream in config.streams {
            if stream.direction == .redshiftToMongo || stream.direction == .mongoToRedshift {
                if config.redshift == nil { throw ConfigError(file: file, line: nil, message: "stream \(stream.name) needs a `redshift:` section") }
                if config.mongo == nil { throw ConfigError(file: file, line: nil, message: "stream \(stream.name) needs a `mongo:` section") }
            }
            if config.redshift?.s3 == nil {
                if stream.load == .copy, config.redshift?.dialect == .redshift {
                    throw ConfigError(file: file, line: nil, message: "stream \(stream.name): `load: copy` needs `redshift.s3` (the bucket COPY reads)")
                }
                if stream.extract == .unload {
                    throw ConfigError(file: file, line: nil, message: "stream \(stream.name): `extract: unload` needs `redshift.s3` (the bucket UNLOAD writes)")
                }
            }
        }
        return config
    }

    /// Stream keys that only one direction reads.
    static let directionalKeys: [String: StreamConfig.Direction] = [
        "key": .redshiftToMongo, "watermark": .redshiftToMongo, "safety_lag": .redshiftToMongo, "lookback": .redshiftToMongo,
        "deletes": .redshiftToMongo, "reconcile_every": .redshiftToMongo, "tombstone_retention": .redshiftToMongo,
        "max_delete_ratio": .redshiftToMongo, "delete_grace": .redshiftToMongo, "unload_min_rows": .redshiftToMongo,
        "flatten": .mongoToRedshift, "on_history_lost": .mongoToRedshift, "on_drop": .mongoToRedshift,
    ]

    private func parseStream(_ node: Node, config: ReplicationConfig) throws -> StreamConfig {
        let allowed: Set<String> = ["name", "from", "to", "key", "watermark", "safety_lag", "lookback", "deletes", "reconcile_every", "max_delete_ratio", "delete_grace", "max_writes_per_second", "columns", "where", "match", "tombstone_retention",
                                    "partitions", "flatten", "on_history_lost", "on_drop", "batch_bytes", "poll_interval",
                                    "parallelism", "memory_budget", "spool_max_bytes", "load", "extract", "unload_min_rows"]
        let m = try mapping(node, "a stream", allowed: allowed)
        let name = try string(try require(m, "name", in: node, "stream"), "name")
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else {
            throw located(m["name"]!, "stream name \"\(name)\" may only contain letters, digits, '_', '-' and '.'")
        }
        // The target's checkpoint keys are `<name>@<instance id>` plus `#p<partition>` or `#gen`, in a varchar(127) (bytes on Redshift).
        guard name.utf8.count <= 64 else {
            throw located(m["name"]!, "stream name \"\(name)\" is longer than 64 bytes")
        }
        let from = try mapping(try require(m, "from", in: node, "stream \(name)"), "stream \(name).from", allowed: ["table", "collection"])
        let to = try mapping(try require(m, "to", in: node, "stream \(name)"), "stream \(name).to", allowed: ["table", "collection"])
        for (side, what) in [(from, "from"), (to, "to")] where side.count > 1 {
            throw located(m[what]!, "stream \(name): `\(what):` names either a table or a collection, not both")
        }
        var stream: StreamConfig
        if let table = from["table"], let coll = to["collection"] {
            stream = StreamConfig(name: name, direction: .redshiftToMongo, table: TableName(parsing: try string(table, "from.table")),
                                  collection: try string(coll, "to.collection"), defaults: config.defaults)
        } else if let coll = from["collection"], let table = to["table"] {
            stream = StreamConfig(name: name, direction: .mongoToRedshift, table: Self.inSchema(TableName(parsing: try string(table, "to.table"))),
                                  collection: try string(coll, "from.collection"), defaults: config.defaults)
        } else {
            throw located(node, "stream \(name): use `from: {table}` with `to: {collection}`, or `from: {collection}` with `to: {table}`")
        }
        // Settings of the other direction would be ignored: refused, so nobody relies on one that does nothing.
        for key in Self.directionalKeys.keys.sorted() {
            guard let direction = Self.directionalKeys[key], direction != stream.direction, let v = m[key] else { continue }
            throw located(v, "stream \(name): `\(key)` is for \(direction == .redshiftToMongo ? "Redshift → Mongo" : "Mongo → Redshift") streams")
        }
        if let key = m["key"] {
            switch key {
            case .scalar: stream.key = [try string(key, "key")]
            case .sequence(let items): stream.key = try items.map { try string($0, "key") }
            default: throw located(key, "key must be a column name or a list of column names")
            }
            if stream.key.isEmpty { throw located(key, "key must name at least one column") }
        }
        if let v = m["watermark"] { stream.watermark = try string(v, "watermark") }
        if let v = m["columns"] { stream.columns = try columnMapping(v, stream: name, direction: stream.direction) }
        if let v = m["match"] {
            guard stream.direction == .mongoToRedshift else { throw located(v, "stream \(name): `match:` filters a collection; a Redshift → Mongo stream uses `where:`") }
            guard case .document(let document) = try bson(v) else { throw located(v, "stream \(name): `match:` is a $match document") }
            do {
                stream.match = try MatchFilter(document)
            } catch {
                throw located(v, "stream \(name): match: \(error)")
            }
        }
        if let v = m["where"] {
            guard stream.direction == .redshiftToMongo else { throw located(v, "stream \(name): `where:` filters a Redshift table; a Mongo → Redshift stream uses `match:`") }
            let predicate = try string(v, "where").trimmingCharacters(in: .whitespaces)
            guard !predicate.isEmpty, !predicate.contains(";") else { throw located(v, "stream \(name): `where:` is one SQL predicate (no ';')") }
            stream.filter = predicate
        }
        if let v = m["safety_lag"] { stream.safetyLag = try duration(v, "safety_lag") }
        if let v = m["lookback"] {
            let text = try string(v, "lookback")
            if let units = Int64(text) {
                guard units >= 0 else { throw located(v, "lookback: \"\(text)\" must not be negative") }
                stream.lookback = units == 0 ? .off : .units(units)
            } else {
                let d = try duration(v, "lookback (a duration like 10m for time watermarks, a number for integer ones)")
                stream.lookback = d == .zero ? .off : .duration(d)
            }
        }
        if let v = m["deletes"] {
            let d = try mapping(v, "deletes", allowed: ["column"])
            stream.deleteColumn = try string(try require(d, "column", in: v, "deletes"), "deletes.column")
        }
        if let v = m["reconcile_every"] { stream.reconcileEvery = try duration(v, "reconcile_every") }
        if let v = m["tombstone_retention"] { stream.tombstoneRetention = try duration(v, "tombstone_retention") }
        if let v = m["max_delete_ratio"] { stream.maxDeleteRatio = try ratio(v, "max_delete_ratio") }
        if let v = m["delete_grace"] { stream.deleteGrace = try duration(v, "delete_grace") }
        if let v = m["max_writes_per_second"] {
            guard stream.direction == .redshiftToMongo else { throw located(v, "stream \(name): max_writes_per_second limits writes to a Mongo target (a Redshift → Mongo stream)") }
            stream.maxWritesPerSecond = try integer(v, "max_writes_per_second", min: 1, max: 10_000_000)
        }
        if let v = m["partitions"] { stream.partitions = try integer(v, "partitions", min: 1, max: 10_000) }
        if let v = m["flatten"] { stream.flatten = try integer(v, "flatten", min: 0, max: 8) }
        if let v = m["on_history_lost"] {
            guard let value = OnHistoryLost(rawValue: try string(v, "on_history_lost")) else { throw located(v, "on_history_lost must be resnapshot or fail") }
            stream.onHistoryLost = value
        }
        if let v = m["on_drop"] {
            guard let value = OnDrop(rawValue: try string(v, "on_drop")) else { throw located(v, "on_drop must be keep, truncate or fail") }
            stream.onDrop = value
        }
        if let v = m["batch_bytes"] { stream.batchBytes = try size(v, "batch_bytes") }
        if let v = m["poll_interval"] { stream.pollInterval = try duration(v, "poll_interval", atLeast: Self.minimumPollInterval) }
        if let v = m["parallelism"] { stream.parallelism = try integer(v, "parallelism", min: 1, max: 64) }
        if let v = m["memory_budget"] { stream.memoryBudget = try size(v, "memory_budget") }
        if let v = m["spool_max_bytes"] { stream.spoolMaxBytes = try size(v, "spool_max_bytes") }
        if let v = m["load"] {
            guard stream.direction == .mongoToRedshift else { throw located(v, "stream \(name): `load` is for Mongo → Redshift streams") }
            stream.load = try loadMethod(v, "load")
        }
        if let v = m["extract"] {
            guard stream.direction == .redshiftToMongo else { throw located(v, "stream \(name): `extract` is for Redshift → Mongo streams") }
            stream.extract = try extractMethod(v, "extract")
        }
        if let v = m["unload_min_rows"] { stream.unloadMinRows = try integer(v, "unload_min_rows", min: 0, max: Int.max) }
        if stream.direction == .redshiftToMongo, stream.deleteColumn != nil, stream.watermark == nil {
            throw located(node, "stream \(name): soft deletes need a `watermark:` column to be noticed")
        }
        return stream
    }

    private func parseS3(_ node: Node) throws -> S3Staging {
        let m = try mapping(node, "redshift.s3", allowed: ["bucket", "prefix", "region", "endpoint", "iam_role", "profile"])
        let bucket = try string(try require(m, "bucket", in: node, "redshift.s3"), "redshift.s3.bucket")
        guard !bucket.isEmpty, !bucket.contains("/"), !bucket.hasPrefix("s3:") else {
            throw located(m["bucket"]!, "redshift.s3.bucket is a bucket name (no s3://, no slash); put the path in `prefix:`")
        }
        var s3 = S3Staging(bucket: bucket)
        if let v = m["prefix"] {
            var prefix = try string(v, "redshift.s3.prefix")
            while prefix.hasPrefix("/") { prefix.removeFirst() }
            if !prefix.isEmpty && !prefix.hasSuffix("/") { prefix += "/" }
            s3.prefix = prefix
        }
        s3.region = try m["region"].map { try string($0, "redshift.s3.region") } ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        if let v = m["endpoint"] {
            let endpoint = try string(v, "redshift.s3.endpoint")
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else { throw located(v, "redshift.s3.endpoint must start with http:// or https://") }
            s3.endpoint = endpoint
        } else if let endpoint = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"], !endpoint.isEmpty {
            // AWS's shared configuration variables (the SDKs and CLI read them too); the file's key wins.
            guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                throw located(node, "AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL must start with http:// or https://")
            }
            s3.endpoint = endpoint
        }
        if let v = m["iam_role"] {
            let role = try string(v, "redshift.s3.iam_role")
            guard role == "default" || role.hasPrefix("arn:") else { throw located(v, "redshift.s3.iam_role must be a role ARN (arn:aws:iam::…:role/…) or `default`") }
            s3.iamRole = role
        }
        if let v = m["profile"] { s3.profile = try string(v, "redshift.s3.profile") }
        return s3
    }

    private func loadMethod(_ node: Node, _ what: String) throws -> LoadMethod {
        guard let method = LoadMethod(rawValue: try string(node, what)) else { throw located(node, "\(what) must be copy or insert") }
        return method
    }

    private func extractMethod(_ node: Node, _ what: String) throws -> ExtractMethod {
        guard let method = ExtractMethod(rawValue: try string(node, what)) else { throw located(node, "\(what) must be auto, unload or select") }
        return method
    }

    // MARK: - node helpers

    private func mapping(_ node: Node, _ what: String, allowed: Set<String>) throws -> [String: Node] {
        guard case .mapping(let mapping) = node else { throw located(node, "\(what) must be a mapping") }
        var out: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let key) = keyNode else { throw located(keyNode, "keys in \(what) must be plain names") }
            guard allowed.contains(key.string) else {
                let hint = allowed.sorted().joined(separator: ", ")
                throw located(keyNode, "unknown key \"\(key.string)\" in \(what) (allowed: \(hint))")
            }
            if out[key.string] != nil { throw located(keyNode, "duplicate key \"\(key.string)\" in \(what)") }
            out[key.string] = value
        }
        return out
    }

    private func require(_ m: [String: Node], _ key: String, in node: Node, _ what: String) throws -> Node {
        guard let value = m[key] else { throw located(node, "\(what) is missing required key \"\(key)\"") }
        return value
    }

    private func string(_ node: Node, _ what: String) throws -> String {
        guard case .scalar(let s) = node else { throw located(node, "\(what) must be a single value") }
        return try expand(s.string, node, what)
    }

    /// `${VAR}` from the environment; `$$` is a literal `$`. An unset variable is an error naming it.
    private func expand(_ text: String, _ node: Node, _ what: String) throws -> String {
        guard text.contains("$") else { return text }
        var out = ""
        for piece in Self.pieces(of: text) {
            switch piece {
            case .text(let t): out += t
            case .variable(let name):
                guard let value = environment[name] else {
                    throw located(node, "\(what): environment variable \(name) is not set")
                }
                out += value
            }
        }
        return out
    }

    private enum Piece { case text(Substring), variable(String) }

    /// `text` cut into literal runs and `${VAR}` references (`$$` → `$`).
    private static func pieces(of text: String) -> [Piece] {
        var pieces: [Piece] = []
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            pieces.append(.text(rest[..<dollar]))
            let after = rest[rest.index(after: dollar)...]
            if after.first == "$" {
                pieces.append(.text("$"))
                rest = after.dropFirst()
            } else if after.first == "{", let close = after.firstIndex(of: "}") {
                pieces.append(.variable(String(after[after.index(after: after.startIndex)..<close])))
                rest = after[after.index(after: close)...]
            } else {
                pieces.append(.text("$"))
                rest = after
            }
        }
        pieces.append(.text(rest))
        return pieces
    }

    /// Every unset `${VAR}` of the file in one error (a first run should not discover them one at a time).
    private func checkVariablesAreSet(_ root: Node) throws {
        var missing: [(name: String, line: Int?)] = []
        func walk(_ node: Node) {
            switch node {
            case .scalar(let s):
                for case .variable(let name) in Self.pieces(of: s.string) where environment[name] == nil
                    && !missing.contains(where: { $0.name == name }) {
                    missing.append((name, node.mark?.line))
                }
            case .mapping(let m): for (k, v) in m { walk(k); walk(v) }
            case .sequence(let seq): seq.forEach(walk)
            }
        }
        walk(root)
        guard missing.count > 1 else { return }
        let list = missing.map { entry in entry.line.map { "\(entry.name) (line \($0))" } ?? entry.name }.joined(separator: ", ")
        throw ConfigError(file: file, line: missing[0].line, message: "environment variables not set: \(list)")
    }

    private func integer(_ node: Node, _ what: String, min: Int, max: Int) throws -> Int {
        let text = try string(node, what)
        guard let v = Int(text), v >= min, v <= max else { throw located(node, "\(what) must be an integer from \(min) to \(max), not \"\(text)\"") }
        return v
    }

    /// `columns: {include: [...], exclude: [...], rename: {from: to}}`.
    private func columnMapping(_ node: Node, stream name: String, direction: StreamConfig.Direction) throws -> FieldMapping {
        let m = try mapping(node, "stream \(name).columns", allowed: ["include", "exclude", "rename"])
        func names(_ key: String) throws -> [String]? {
            guard let v = m[key] else { return nil }
            guard case .sequence(let items) = v else { throw located(v, "columns.\(key) must be a list of names") }
            return try items.map { try string($0, "columns.\(key)") }
        }
        var mapping = FieldMapping(include: try names("include"), exclude: try names("exclude") ?? [])
        if let v = m["rename"] {
            guard case .mapping(let pairs) = v else { throw located(v, "columns.rename must be a mapping from: to") }
            for (fromNode, to) in pairs {
                let from = try string(fromNode, "columns.rename")
                guard mapping.rename[from] == nil else { throw located(fromNode, "columns.rename: \"\(from)\" is renamed twice") }
                mapping.rename[from] = try string(to, "columns.rename.\(from)")
            }
        }
        if direction == .redshiftToMongo, let dotted = mapping.exclude.first(where: { $0.contains(".") }) {
            throw located(node, "stream \(name): columns.exclude names columns; \"\(dotted)\" is a path (paths are for Mongo → Redshift)")
        }
        if let problem = mapping.problems(reserved: ["_id", "_mongoshift"]).first {
            throw located(node, "stream \(name): columns: \(problem)")
        }
        return mapping
    }

    /// A YAML value as BSON (`match:`): mappings → documents, sequences → arrays, plain scalars typed as YAML reads
    /// them (integers, floats, booleans, null), quoted ones strings; `{$date: ISO-8601}` → a date.
    private func bson(_ node: Node) throws -> BSON {
        switch node {
        case .mapping(let pairs):
            var doc = Document()
            for (k, v) in pairs {
                guard case .scalar(let key) = k else { throw located(k, "keys must be plain names") }
                if doc[key.string] != nil { throw located(k, "duplicate key \"\(key.string)\"") }
                doc.append(key.string, try bson(v))
            }
            if doc.keys == ["$date"], case .string(let text)? = doc["$date"] {
                guard let ms = Self.parseISODate(text) else { throw located(node, "$date: \"\(text)\" is not an ISO-8601 time") }
                return .datetime(ms)
            }
            return .document(doc)
        case .sequence(let items):
            return .array(try items.map { try bson($0) })
        case .scalar(let s):
            let text = try expand(s.string, node, "match")
            if s.style != .plain { return .string(text) }
            if let i = Int32(text) { return .int32(i) }
            if let i = Int64(text) { return .int64(i) }
            if let d = Double(text), text.contains(".") || text.lowercased().contains("e") { return .double(d) }
            switch text {
            case "true": return .bool(true)
            case "false": return .bool(false)
            case "null", "~": return .null
            default: return .string(text)
            }
        }
    }

    /// A target table named without a schema is `public`'s: every statement and catalog lookup then names the
    /// same table, whatever the login's `search_path` (`CREATE TABLE apps` went to a `$user` schema while the
    /// catalog was searched in `public`). Sources are read as named (through `search_path`).
    static func inSchema(_ table: TableName) -> TableName {
        table.schema == nil ? TableName(schema: "public", name: table.name) : table
    }

    static func parseISODate(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime], [.withFullDate]] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        }
        return nil
    }

    /// `10%` or `0.1`, from 0 to 1.
    private func ratio(_ node: Node, _ what: String) throws -> Double {
        let text = try string(node, what)
        let value = text.hasSuffix("%") ? Double(text.dropLast()).map { $0 / 100 } : Double(text)
        guard let value, value >= 0, value <= 1 else { throw located(node, "\(what) must be a fraction from 0 to 1 or a percentage (10%), not \"\(text)\"") }
        return value
    }

    /// `atLeast`: a smaller value would break at run time (a lease renewed in a tight loop and expiring between
    /// renewals, a source polled without pause), so it is refused here, naming the line.
    private func duration(_ node: Node, _ what: String, atLeast minimum: Duration = .zero) throws -> Duration {
        let text = try string(node, what)
        guard let d = Self.parseDuration(text) else {
            throw located(node, "\(what): \"\(text)\" is not a duration (use 500ms, 10s, 5m, 1h)")
        }
        if d < minimum { throw located(node, "\(what): \(text) is too short (at least \(Self.format(minimum)))") }
        return d
    }

    static let minimumLease = Duration.seconds(3)
    static let minimumPollInterval = Duration.milliseconds(10)

    private static func format(_ d: Duration) -> String {
        d.seconds >= 1 ? "\(Int(d.seconds))s" : "\(Int(d.seconds * 1000))ms"
    }

    private func size(_ node: Node, _ what: String) throws -> Int {
        let text = try string(node, what)
        guard let s = Self.parseSize(text), s > 0 else {
            throw located(node, "\(what): \"\(text)\" is not a size (use 512KiB, 8MiB, 2GiB)")
        }
        return s
    }

    static func parseDuration(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "0" { return .zero }
        for (suffix, unit) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)] where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v >= 0, v.isFinite,
                  let ms = Int64(exactly: (v * unit * 1000).rounded()) else { return nil }
            return .milliseconds(ms)
        }
        return nil
    }

    static func parseSize(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        for (suffix, unit) in [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("B", 1)] where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0, v.isFinite else { return nil }
            return Int(exactly: (v * Double(unit)).rounded(.down))
        }
        return Int(t)
    }

    private func located(_ node: Node, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node.mark?.line, message: message)
    }

    private func yamlError(_ error: YamlError) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, message: "invalid YAML: \(problem)")
        case .reader(let problem, _, _, _):
            return ConfigError(file: file, line: nil, message: "invalid YAML: \(problem)")
        default:
            return ConfigError(file: file, line: nil, message: "invalid YAML: \(error)")
        }
    }
}

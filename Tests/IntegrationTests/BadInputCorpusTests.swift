import BSON
import Foundation
import MongoClient
import PostgresClient
import Replication
import SQLiteStore
import TestSupport
import XCTest

/// `fixtures/bad/`: every file is one bad input with its expected outcome in its header — a documented exit code
/// and a one-line error naming the place, or dead-letter entries while the good rows still arrive — and no state
/// damage. Adding a file adds a case; failures name the file.
final class BadInputCorpusTests: IntegrationTestCase {
    override var namePrefix: String { "bad" }
    var dropTables: [String] = []
    var dropSchemas: [String] = []

    static var corpus: String { TestServers.repositoryRoot + "/fixtures/bad" }

    override func setUp() async throws {
        try await super.setUp()
        onTeardown { [unowned self] in
            for t in dropTables { _ = try? await connection?.execute("DROP TABLE IF EXISTS \(t)") }
            for s in dropSchemas { _ = try? await connection?.execute("DROP SCHEMA IF EXISTS \(s) CASCADE") }
        }
    }

    // MARK: - the corpus

    static func files(_ folder: String) -> [String] {
        let dir = corpus + "/" + folder
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().map { dir + "/" + $0 }
    }

    /// `# expect-exit: 2` / `-- expect-stderr: text` lines (repeatable keys collect every value).
    static func header(_ path: String) -> [String: [String]] {
        let data = FileManager.default.contents(atPath: path) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        var out: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            var l = Substring(line)
            if l.hasPrefix("# ") { l = l.dropFirst(2) } else if l.hasPrefix("-- ") { l = l.dropFirst(3) } else { continue }
            guard let colon = l.firstIndex(of: ":") else { continue }
            let key = l[..<colon].trimmingCharacters(in: .whitespaces)
            let value = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            out[key, default: []].append(value)
        }
        return out
    }

    func testCorpusHasAtLeastFortyCasesEachWithAnExpectation() {
        let all = Self.files("config") + Self.files("redshift") + Self.files("mongo")
        XCTAssertGreaterThanOrEqual(all.count + BadStateTests.scenarioCount, 40)
        for file in Self.files("config") + Self.files("redshift") {
            let h = Self.header(file)
            XCTAssertNotNil(h["bad input"], "\(file): describe the case with a `bad input:` line")
            XCTAssertNotNil(h["expect-exit"], "\(file): state the expected exit code")
        }
    }

    // MARK: - configuration

    func environment(state: String) -> [String: String] {
        var wrong = URLComponents(string: pg)!
        wrong.user = "pw_canary"
        wrong.password = "not-the-password"
        var verifyFull = URLComponents(string: pg)!
        verifyFull.queryItems = (verifyFull.queryItems ?? []) + [URLQueryItem(name: "sslmode", value: "verify-full")]
        let tls = mongoURL + (mongoURL.contains("?") ? "&" : "?") + "tls=true&serverSelectionTimeoutMS=1500&connectTimeoutMS=1000"
        return ["MONGOSHIFT_BAD_STATE": state, "MONGOSHIFT_BAD_PG": pg, "MONGOSHIFT_BAD_MONGO": mongoURL, "MONGOSHIFT_BAD_DB": database,
                "MONGOSHIFT_BAD_TABLE": "public.\(table)", "MONGOSHIFT_BAD_PG_WRONG_PASSWORD": wrong.string!,
                "MONGOSHIFT_BAD_PG_VERIFY_FULL": verifyFull.string!, "MONGOSHIFT_BAD_MONGO_TLS": tls]
    }

    func testConfigurationCases() async throws {
        table = TestServers.uniqueName("bad_orders")
        dropTables.append("public.\(table)")
        try await Fixtures.createOrders(connection, table: table, rows: 50)
        try await TestServers.createPasswordRole(connection, "pw_canary", password: "canary-password")
        let cases = Self.files("config")
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for file in cases {
            let name = (file as NSString).lastPathComponent
            let h = Self.header(file)
            let state = directory + "/" + name + ".state"
            let command = h["command"]?.first ?? "snapshot"
            let args = (h["args"]?.first ?? "").split(separator: " ").map(String.init)
            let result = try MongoshiftProcess.run([command, "--config", file] + args, environment: environment(state: state), timeout: 120)
            let expected = Int32(h["expect-exit"]?.first ?? "") ?? -1
            XCTAssertEqual(result.status, expected, "\(name): exit code; stderr: \(result.stderr.suffix(600))")
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("mongoshift: error:") }
            XCTAssertEqual(errors.count, 1, "\(name): exactly one error line; stderr: \(result.stderr.suffix(600))")
            for needle in h["expect-stderr"] ?? [] {
                XCTAssertTrue(errors.first?.contains(needle) ?? false, "\(name): the error line names \"\(needle)\"; got: \(errors.first ?? "nothing")")
            }
            // Nothing was started: no state, or a state store with no segment and no position.
            XCTAssertTrue(Self.stateUntouched(state), "\(name): state changed")
            print("bad input \(name): exit \(result.status) · \(errors.first ?? "")")
        }
    }

    static func stateUntouched(_ state: String) -> Bool {
        let db = state + "/state.db"
        guard FileManager.default.fileExists(atPath: db) else { return true }
        guard let store = try? SQLiteDatabase(path: db, readOnly: true),
              let check = try? store.query("PRAGMA integrity_check").first?[0].text, check == "ok",
              let segments = try? store.query("SELECT count(*) FROM segments").first?[0].int
        else { return false }
        return segments == 0
    }

    // MARK: - Redshift → Mongo data

    func sqlASCIIURL() async throws -> String {
        let exists = try await connection.query("SELECT 1 FROM pg_database WHERE datname = 'mongoshift_sql_ascii'").rows.count > 0
        if !exists {
            try await connection.execute("CREATE DATABASE mongoshift_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        }
        var url = URLComponents(string: pg)!
        url.path = "/mongoshift_sql_ascii"
        return url.string!
    }

    func testRedshiftToMongoDataCases() async throws {
        let cases = Self.files("redshift")
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for file in cases {
            let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let h = Self.header(file)
            let sourceURL = h["database"]?.first == "sql_ascii" ? try await sqlASCIIURL() : pg
            let source = sourceURL == pg ? connection! : try await PostgresConnection.connect(sourceURL)
            let t = TestServers.uniqueName("bad")
            let sql = try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: ":table", with: "public.\(t)")
            try await source.execute(sql)
            let collection = "c_" + name.replacingOccurrences(of: "-", with: "_")
            let state = directory + "/\(name).state"
            let yaml = """
            state: \(state)
            redshift: { url: "\(sourceURL)", dialect: postgres }
            mongo: { url: "\(mongoURL)", database: \(database) }
            streams:
              - name: bad
                from: { table: public.\(t) }
                to: { collection: \(collection) }
                key: [id]
                watermark: updated_at
            """
            let config = directory + "/\(name).yaml"
            try yaml.write(toFile: config, atomically: true, encoding: .utf8)
            let command = h["command"]?.first ?? "snapshot"
            let result = try MongoshiftProcess.run([command, "--config", config], timeout: 180)
            _ = try? await source.execute("DROP TABLE IF EXISTS public.\(t)")
            try await check(name: name, header: h, result: result, state: state, stream: "bad") {
                try await self.mongo.count(database: self.database, collection: collection)
            }
        }
    }

    // MARK: - Mongo → Redshift data

    func testMongoToRedshiftDataCases() async throws {
        let cases = Self.files("mongo")
        XCTAssertGreaterThanOrEqual(cases.count, 5)
        let schema = TestServers.uniqueName("bad")
        dropSchemas.append(schema)
        for file in cases {
            let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let spec = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: file)!) as! [String: Any]
            let docs = (spec["documents"] as! [Any]).map { Self.bson(from: $0).documentValue! }
            let expect = spec["expect"] as! [String: Any]
            let collection = "c_" + name.replacingOccurrences(of: "-", with: "_")
            let result0 = try await mongo.bulkWrite(database: database, collection: collection, docs.map { .insert($0) }, validation: .none)
            XCTAssertEqual(result0.writeErrors.count, 0, "\(name): seeding: \(result0.writeErrors)")
            let state = directory + "/\(name).state"
            let yaml = """
            state: \(state)
            redshift: { url: "\(pg)", dialect: postgres }
            mongo: { url: "\(mongoURL)", database: \(database) }
            streams:
              - name: bad
                from: { collection: \(collection) }
                to: { table: \(schema).\(collection) }
            """
            let config = directory + "/\(name).yaml"
            try yaml.write(toFile: config, atomically: true, encoding: .utf8)
            let result = try MongoshiftProcess.run(["snapshot", "--config", config], timeout: 180)
            var h: [String: [String]] = ["expect-exit": ["\(expect["exit"] as? Int ?? 0)"]]
            if let n = expect["deadLetters"] as? Int {
                h["expect-dead-letters"] = ["\(n)" + ((expect["reason"] as? String).map { " \"\($0)\"" } ?? "")]
            }
            if let rows = expect["rows"] as? Int { h["expect-documents"] = ["\(rows)"] }
            try await check(name: name, header: h, result: result, state: state, stream: "bad") {
                Int(try await self.connection.query("SELECT count(*) FROM \(schema).\(collection)").rows.first?[0] ?? "0") ?? 0
            }
        }
    }

    /// Checks one data case's exit code, output, dead letters and delivered rows.
    func check(name: String, header h: [String: [String]], result: MongoshiftProcess.Result, state: String, stream: String,
               delivered: () async throws -> Int) async throws {
        let expected = Int32(h["expect-exit"]?.first ?? "") ?? -1
        XCTAssertEqual(result.status, expected, "\(name): exit code; stderr: \(result.stderr.suffix(800))")
        for needle in h["expect-stderr"] ?? [] {
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("mongoshift: error:") }
            XCTAssertEqual(errors.count, 1, "\(name): one error line; stderr: \(result.stderr.suffix(600))")
            XCTAssertTrue(errors.first?.contains(needle) ?? false, "\(name): the error names \"\(needle)\"; got \(errors.first ?? "nothing")")
            XCTAssertTrue(Self.stateUntouched(state), "\(name): state changed")
        }
        for needle in h["expect-output"] ?? [] {
            XCTAssertTrue((result.stdout + result.stderr).contains(needle), "\(name): output names \"\(needle)\":\n\(result.stdout)\(result.stderr.suffix(600))")
        }
        if let spec = h["expect-dead-letters"]?.first {
            let parts = spec.split(separator: " ", maxSplits: 1)
            let count = Int(parts[0]) ?? -1
            let dlq = (try? String(contentsOfFile: state + "/deadletter/\(stream).jsonl", encoding: .utf8)) ?? ""
            let lines = dlq.split(separator: "\n")
            XCTAssertEqual(lines.count, count, "\(name): dead-letter entries:\n\(dlq.prefix(1000))")
            if parts.count == 2 {
                let reason = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                XCTAssertTrue(lines.allSatisfy { $0.contains(reason) && $0.contains("\"key\"") },
                              "\(name): every entry names its key and \"\(reason)\":\n\(dlq.prefix(1000))")
            }
        }
        if let docs = h["expect-documents"]?.first.flatMap({ Int($0) }) {
            let got = try await delivered()
            XCTAssertEqual(got, docs, "\(name): rows delivered to the target; stderr:\n\(result.stderr.suffix(1500))")
        }
        print("bad input \(name): exit \(result.status)")
    }

    /// Plain JSON plus the canonical Extended JSON wrappers the corpus uses ($numberDouble, $numberDecimal,
    /// $numberLong, $date).
    static func bson(from json: Any) -> BSON {
        switch json {
        case let d as [String: Any]:
            if d.count == 1, let (k, v) = d.first {
                switch k {
                case "$numberDouble": return .double(Double(v as! String)!)
                case "$numberDecimal": return .decimal128(Decimal128(v as! String)!)
                case "$numberLong": return .int64(Int64(v as! String)!)
                case "$date": if case .int64(let ms) = bson(from: v) { return .datetime(ms) }
                default: break
                }
            }
            var doc = Document()
            for key in d.keys.sorted(by: { $0 == "_id" ? true : $1 == "_id" ? false : $0 < $1 }) { doc.append(key, bson(from: d[key]!)) }
            return .document(doc)
        case let a as [Any]: return .array(a.map { bson(from: $0) })
        case let s as String: return .string(s)
        case let n as NSNumber:
            // (The corpus has no booleans: JSON numbers are int32 when integral, else double.)
            if let i = Int32(exactly: n.doubleValue) { return .int32(i) }
            return .double(n.doubleValue)
        default: return .null
        }
    }
}

@testable import mongoshift
import Replication
import XCTest

final class ConfigLoaderTests: XCTestCase {
    let loader = ConfigLoader(file: "test.yaml", environment: ["PGPASS": "s3cret", "MONGO_URL": "mongodb://h/"])

    let valid = """
    state: ./st
    redshift:
      url: postgresql://etl:${PGPASS}@host:5439/dev
      dialect: redshift
    mongo:
      url: ${MONGO_URL}
      database: app
    defaults: { batch_bytes: 4MiB, poll_interval: 500ms, parallelism: 3 }
    streams:
      - name: orders
        from: { table: public.orders }
        to: { collection: orders }
        key: [id]
        watermark: updated_at
        safety_lag: 90s
        deletes: { column: is_deleted }
        partitions: 4
      - name: apps
        from: { collection: apps }
        to: { table: analytics.apps }
        on_history_lost: fail
    """

    func testValidConfig() throws {
        let config = try loader.parse(valid)
        XCTAssertEqual(config.stateDirectory, "./st")
        XCTAssertEqual(config.redshift?.url, "postgresql://etl:s3cret@host:5439/dev")
        XCTAssertEqual(config.defaults.batchBytes, 4 << 20)
        XCTAssertEqual(config.defaults.pollInterval, .milliseconds(500))
        XCTAssertEqual(config.streams.count, 2)
        let orders = config.streams[0]
        XCTAssertEqual(orders.direction, .redshiftToMongo)
        XCTAssertEqual(orders.table, TableName(schema: "public", name: "orders"))
        XCTAssertEqual(orders.key, ["id"])
        XCTAssertEqual(orders.safetyLag, .seconds(90))
        XCTAssertEqual(orders.parallelism, 3, "stream inherits defaults")
        XCTAssertEqual(config.streams[1].direction, .mongoToRedshift)
        XCTAssertEqual(config.streams[1].onHistoryLost, .fail)
    }

    func assertError(_ yaml: String, line: Int?, contains text: String, file: StaticString = #filePath, fileLine: UInt = #line) {
        XCTAssertThrowsError(try loader.parse(yaml), file: file, line: fileLine) { error in
            guard let error = error as? ConfigError else { return XCTFail("not a ConfigError: \(error)", file: file, line: fileLine) }
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: fileLine)
            XCTAssertTrue(error.description.hasPrefix(line.map { "test.yaml:\($0): " } ?? "test.yaml: "), error.description, file: file, line: fileLine)
            XCTAssertTrue(error.description.contains(text), error.description, file: file, line: fileLine)
            XCTAssertFalse(error.description.contains("s3cret"), "secrets never appear in errors", file: file, line: fileLine)
        }
    }

    /// A bare target table name is `public`'s, so statements and catalog lookups name one table whatever
    /// `search_path` is; a bare source table is read as named.
    func testABareTargetTableNameIsInPublic() throws {
        let config = try loader.parse(valid.replacingOccurrences(of: "table: public.orders", with: "table: orders")
                                           .replacingOccurrences(of: "table: analytics.apps", with: "table: apps"))
        XCTAssertEqual(config.streams.first { $0.name == "orders" }?.table, TableName(schema: nil, name: "orders"))
        XCTAssertEqual(config.streams.first { $0.direction == .mongoToRedshift }?.table, TableName(schema: "public", name: "apps"))
    }

    /// `redshift.time_zone`: PostgreSQL only (Redshift's timestamp watermarks hold UTC), a zone name only.
    func testTimeZoneIsForPostgresAndAName() throws {
        let postgres = valid.replacingOccurrences(of: "  dialect: redshift", with: "  dialect: postgres\n  time_zone: America/New_York")
        XCTAssertEqual(try loader.parse(postgres).redshift?.timeZone, "America/New_York")
        assertError(valid.replacingOccurrences(of: "  dialect: redshift", with: "  dialect: redshift\n  time_zone: UTC"), line: 5,
                    contains: "redshift.time_zone is for dialect postgres")
        assertError(postgres.replacingOccurrences(of: "America/New_York", with: "\"x'; DROP TABLE t\""), line: 5, contains: "must be a time zone name")
    }

    func testUnknownKeyNamesFileAndLine() {
        assertError(valid.replacingOccurrences(of: "    partitions: 4", with: "    partitons: 4"), line: 17, contains: "unknown key \"partitons\"")
        assertError("state: x\nbogus: 1\n", line: 2, contains: "unknown key \"bogus\"")
    }

    func testBadDurationAndSize() {
        assertError(valid.replacingOccurrences(of: "safety_lag: 90s", with: "safety_lag: 90 parsecs"), line: 15, contains: "not a duration")
        assertError(valid.replacingOccurrences(of: "batch_bytes: 4MiB", with: "batch_bytes: lots"), line: 8, contains: "not a size")
    }

    /// `lease: 0s` renewed in a tight loop and expired between renewals (every apply fenced); `poll_interval: 0s`
    /// polled the source without pause. Both refused, naming the line.
    func testLeaseAndPollIntervalTooShortAreRefused() {
        assertError("lease: 0s\n" + valid, line: 1, contains: "lease: 0s is too short (at least 3s)")
        assertError(valid.replacingOccurrences(of: "poll_interval: 500ms", with: "poll_interval: 0s"), line: 8, contains: "too short (at least 10ms)")
    }

    func testMissingRequiredKey() {
        assertError(valid.replacingOccurrences(of: "  database: app\n", with: ""), line: 6, contains: "missing required key \"database\"")
        assertError(valid.replacingOccurrences(of: "    to: { collection: orders }\n", with: ""), line: 10, contains: "missing required key \"to\"")
    }

    func testDuplicateStreamName() {
        assertError(valid.replacingOccurrences(of: "name: apps", with: "name: orders"), line: 18, contains: "duplicate stream name \"orders\"")
        // A name long enough to fill the target's checkpoint key (name@instance#pN, varchar(127)) would give every
        // snapshot partition the stream's own fence row.
        assertError(valid.replacingOccurrences(of: "name: apps", with: "name: " + String(repeating: "a", count: 65)), line: 18,
                    contains: "longer than 64 bytes")
        XCTAssertNoThrow(try loader.parse(valid.replacingOccurrences(of: "name: apps", with: "name: " + String(repeating: "a", count: 64))))
        // Names S3 staging and the local UNLOAD files spell alike (lower case, '_' for the rest) would share them:
        // one stream's CLEANPATH or leftover sweep would delete the other's files, or load them.
        assertError(valid.replacingOccurrences(of: "name: orders", with: "name: Orders-EU").replacingOccurrences(of: "name: apps", with: "name: orders_eu"),
                    line: 18, contains: "streams \"orders_eu\" and \"Orders-EU\" (line 10) would share S3 staging \"orders_eu/\"")
    }

    func testMissingEnvironmentVariable() {
        assertError(valid.replacingOccurrences(of: "${MONGO_URL}", with: "${NOPE_NOT_SET}"), line: 6, contains: "NOPE_NOT_SET is not set")
    }

    /// Issue 18 (first run): every unset variable is named at once, not one per attempt.
    func testAllMissingEnvironmentVariablesAreListed() {
        let yaml = valid.replacingOccurrences(of: "${MONGO_URL}", with: "${NOPE_ONE}")
            .replacingOccurrences(of: "${PGPASS}", with: "${NOPE_TWO}")
            .replacingOccurrences(of: "state: ./st", with: "state: ./st   # ${IN_A_COMMENT} is not a variable")
        assertError(yaml, line: 3, contains: "environment variables not set: NOPE_TWO (line 3), NOPE_ONE (line 6)")
        XCTAssertThrowsError(try loader.parse(yaml)) { XCTAssertFalse("\($0)".contains("IN_A_COMMENT")) }
        // `$$` is a literal dollar, not a variable.
        let literal = valid.replacingOccurrences(of: "${MONGO_URL}", with: "mongodb://h/?x=$${NOT_A_VAR}")
        XCTAssertNoThrow(try loader.parse(literal))
    }

    /// Issue 18 (first run): a config file that cannot be read says why.
    func testUnreadableConfigFileSaysWhy() {
        let missing = ConfigLoader(file: "/nonexistent/mongoshift.yaml", environment: [:])
        XCTAssertThrowsError(try missing.load()) { error in
            XCTAssertEqual("\(error)", "/nonexistent/mongoshift.yaml: cannot read the file: No such file or directory")
        }
        let directory = ConfigLoader(file: NSTemporaryDirectory(), environment: [:])
        XCTAssertThrowsError(try directory.load()) { error in
            XCTAssertTrue("\(error)".contains("Is a directory"), "\(error)")
        }
    }

    func testMalformedYAML() {
        assertError("state: ./x\nstreams:\n  - name: [unclosed\n", line: 4, contains: "invalid YAML")
    }

    func testWrongTypes() {
        assertError(valid.replacingOccurrences(of: "partitions: 4", with: "partitions: many"), line: 17, contains: "must be an integer")
        assertError("streams: {a: 1}\n", line: 1, contains: "streams must be a list")
        assertError(valid.replacingOccurrences(of: "dialect: redshift", with: "dialect: oracle"), line: 4, contains: "redshift.dialect")
    }

    func testDurationAndSizeGrammar() {
        XCTAssertEqual(ConfigLoader.parseDuration("500ms"), .milliseconds(500))
        XCTAssertEqual(ConfigLoader.parseDuration("5m"), .seconds(300))
        XCTAssertEqual(ConfigLoader.parseDuration("1h"), .seconds(3600))
        XCTAssertNil(ConfigLoader.parseDuration("5 minutes"))
        XCTAssertEqual(ConfigLoader.parseSize("8MiB"), 8 << 20)
        XCTAssertEqual(ConfigLoader.parseSize("512KiB"), 512 << 10)
        XCTAssertEqual(ConfigLoader.parseSize("2GiB"), 2 << 30)
        XCTAssertNil(ConfigLoader.parseSize("8MB"))
    }

    /// Beyond what the values hold: a configuration error, not a crash (it trapped converting to Int64/Int).
    func testHugeDurationsAndSizesAreRefused() {
        XCTAssertNil(ConfigLoader.parseDuration("1e20s"))
        XCTAssertNil(ConfigLoader.parseSize("1e30GiB"))
        XCTAssertNil(ConfigLoader.parseSize("99999999999999999999"))
        let text = valid.replacingOccurrences(of: "safety_lag: 90s", with: "safety_lag: 1e20s")
        XCTAssertThrowsError(try loader.parse(text)) { XCTAssertTrue("\($0)".contains("test.yaml:15"), "\($0)") }
    }

    /// AWS's shared endpoint variables (DESIGN.md §3): the S3-specific one first, then the general one; the file wins.
    func testS3EndpointFromEnvironment() throws {
        let s3 = valid.replacingOccurrences(of: "  dialect: redshift\n", with: "  dialect: redshift\n  s3: { bucket: b }\n")
        func endpoint(_ env: [String: String], _ text: String) throws -> String? {
            try ConfigLoader(file: "test.yaml", environment: env.merging(["PGPASS": "p", "MONGO_URL": "mongodb://h/"]) { $1 }).parse(text).redshift?.s3?.endpoint
        }
        XCTAssertNil(try endpoint([:], s3))
        XCTAssertEqual(try endpoint(["AWS_ENDPOINT_URL": "http://all:9000"], s3), "http://all:9000")
        XCTAssertEqual(try endpoint(["AWS_ENDPOINT_URL": "http://all:9000", "AWS_ENDPOINT_URL_S3": "http://s3:9000"], s3), "http://s3:9000")
        let explicit = s3.replacingOccurrences(of: "s3: { bucket: b }", with: "s3: { bucket: b, endpoint: \"http://file:1\" }")
        XCTAssertEqual(try endpoint(["AWS_ENDPOINT_URL_S3": "http://s3:9000"], explicit), "http://file:1")
    }

    /// Keys that mean nothing for a stream's direction, both sides of `from:`, and duplicate keys inside `match:`
    /// were accepted silently: a setting the user believes in and mongoshift ignores.
    func testKeysOfTheOtherDirectionAndDuplicatesInMatchAreErrors() {
        func refused(_ from: String, _ to: String, _ replacement: String, file: StaticString = #filePath, line: UInt = #line) -> String {
            let text = valid.replacingOccurrences(of: from, with: to)
            XCTAssertNotEqual(text, valid, "the edit applies", file: file, line: line)
            do {
                _ = try loader.parse(text)
                XCTFail("accepted: \(replacement)", file: file, line: line)
                return ""
            } catch {
                return "\(error)"
            }
        }
        let apps = "    on_history_lost: fail"
        XCTAssertTrue(refused(apps, apps + "\n    safety_lag: 5s", "safety_lag").contains("test.yaml:22: stream apps: `safety_lag` is for Redshift → Mongo streams"))
        XCTAssertTrue(refused(apps, apps + "\n    key: [id]", "key").contains("`key` is for Redshift → Mongo streams"))
        XCTAssertTrue(refused(apps, apps + "\n    match: { status: 1, status: 2 }", "match").contains("duplicate key \"status\""))
        XCTAssertTrue(refused("    partitions: 4", "    partitions: 4\n    on_drop: keep", "on_drop").contains("`on_drop` is for Mongo → Redshift streams"))
        XCTAssertTrue(refused("from: { collection: apps }", "from: { collection: apps, table: public.x }", "both").contains("either"))
    }

    /// Two streams into one table (or collection): a re-snapshot of one swept the other's rows away (every row
    /// of an older generation goes).
    func testTwoStreamsCannotShareATarget() {
        let second = valid + """

          - name: apps_eu
            from: { collection: apps_eu }
            to: { table: analytics.apps }
        """
        XCTAssertThrowsError(try loader.parse(second)) {
            XCTAssertTrue("\($0)".contains("streams \"apps_eu\" and \"apps\" (line 18) both write table analytics.apps"), "\($0)")
        }
    }
}

import ArgumentParser
import Foundation
import Replication
import Yams

extension Mongoshift {
    struct Discover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists tables (keys, candidate watermark columns) and collections (counts, sampled field types).",
            discussion: "Uses the config's `redshift` and `mongo` sections; `streams` may be empty. --emit-config prints a starter config.")

        @OptionGroup var options: GlobalOptions

        @Flag(help: "Print a complete starter configuration (YAML) instead of the listing.")
        var emitConfig = false

        func run() async throws {
            do {
                let (config, _, _) = try options.prepare()
                let discovery = Discovery(config: config)
                let tables = try await discovery.tables()
                let collections = try await discovery.collections()
                if emitConfig {
                    print(try starterConfig(tables: tables, collections: collections))
                    return
                }
                print("TABLES (Redshift/PostgreSQL)")
                if let note = tables.compactMap(\.estimateNote).first { print("  (no row estimates: \(note))") }
                for t in tables {
                    print("  \(t.name)  rows≈\(t.estimatedRows.map(String.init) ?? "?")  key=\(t.key.isEmpty ? "NONE (set key:)" : t.key.joined(separator: ","))"
                          + "  watermark candidates=\(t.watermarkCandidates.isEmpty ? "none" : t.watermarkCandidates.joined(separator: ","))"
                          + (t.hasSoftDeleteColumn.map { "  soft-delete=\($0)" } ?? ""))
                }
                print("COLLECTIONS (MongoDB \(config.mongo?.database ?? "-"))")
                for c in collections {
                    print("  \(c.name)  count=\(c.count)  fields: " + c.fields.map { "\($0.0):\($0.1)" }.joined(separator: ", "))
                }
            } catch {
                throw ErrorReporting.fail(error)
            }
        }

        /// The config file's own top-level sections but its streams, verbatim (so `${VAR}`s stay references and no
        /// secret is printed), plus one stream per table with a key and one per collection, each to a target of its
        /// own (tables of one name in two schemas, or collections one sanitized name, get numbered targets).
        func starterConfig(tables: [Discovery.Table], collections: [Discovery.Collection]) throws -> String {
            let text = try String(contentsOfFile: options.config, encoding: .utf8)
            var out = "# Starter configuration written by `mongoshift discover --emit-config`. Review keys and watermarks.\n"
            if let root = try Yams.compose(yaml: text), case .mapping(let mapping) = root {
                for key in ["state", "local_dir", "lease", "redshift", "mongo", "defaults"] {
                    if let node = mapping[Node(key)] {
                        out += try Yams.serialize(node: Node.mapping(Node.Mapping([(Node(key), node)])))
                    }
                }
            }
            out += "streams:\n"
            var names = Set<String>(), collectionNames = Set<String>(), tableNames = Set<String>()
            func unique(_ base: String, in taken: inout Set<String>) -> String {
                var name = base, i = 2
                while taken.contains(name) { name = "\(base)_\(i)"; i += 1 }
                taken.insert(name)
                return name
            }
            for t in tables where !t.key.isEmpty {
                out += "  - name: \(unique(ColumnNaming.sanitize(t.name.name), in: &names))\n"
                out += "    from: { table: \(t.name) }\n    to: { collection: \(unique(t.name.name, in: &collectionNames)) }\n"
                out += "    key: [\(t.key.joined(separator: ", "))]\n"
                if let w = t.watermarkCandidates.first { out += "    watermark: \(w)\n" }
                if let d = t.hasSoftDeleteColumn, !t.watermarkCandidates.isEmpty { out += "    deletes: { column: \(d) }\n" }
            }
            for t in tables where t.key.isEmpty {
                out += "  # \(t.name): no key found; add `key:` to replicate it\n"
            }
            for c in collections {
                out += "  - name: \(unique(ColumnNaming.sanitize(c.name) + "_to_redshift", in: &names))\n"
                out += "    from: { collection: \(c.name) }\n    to: { table: mongo.\(unique(ColumnNaming.sanitize(c.name), in: &tableNames)) }\n"
            }
            return out
        }
    }
}

import Foundation
@testable import mongoshift
import TestSupport
import XCTest

/// The configuration examples in the docs are configurations mongoshift accepts.
final class DocsExamplesTests: XCTestCase {
    let environment = ["PGPASSWORD": "x", "REDSHIFT_PASSWORD": "x", "MONGO_PASSWORD": "x"]

    /// The fenced ```yaml blocks of a document that hold a whole configuration (a `streams:` key).
    func configurations(in document: String) throws -> [String] {
        let text = try String(contentsOfFile: TestServers.repositoryRoot + "/" + document, encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line.hasPrefix("```yaml") { current = []; continue }
            if current != nil, line.hasPrefix("```") {
                let block = current!.joined(separator: "\n")
                if block.contains("\nstreams:") || block.hasPrefix("streams:") { blocks.append(block) }
                current = nil
                continue
            }
            current?.append(line)
        }
        return blocks
    }

    func testConfigReferenceAndProductionExampleParse() throws {
        for document in ["docs/CONFIG.md", "docs/EXAMPLE-PRODUCTION.md"] {
            let blocks = try configurations(in: document)
            XCTAssertFalse(blocks.isEmpty, "\(document) has a complete example")
            for block in blocks {
                XCTAssertNoThrow(try ConfigLoader(file: document, environment: environment).parse(block), "\(document):\n\(block)")
            }
        }
    }
}

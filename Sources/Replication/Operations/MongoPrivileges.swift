import BSON

/// What the Mongo login may do, from `connectionStatus` with `showPrivileges` — matched to resources the way
/// MongoDB matches them — and what each stream's work needs (docs/CONFIG.md, "Mongo privileges").
struct MongoPrivileges: Sendable, Equatable {
    struct Grant: Sendable, Equatable {
        /// nil with `anyResource` (or `cluster`, which names no collection); "" = every database.
        var db: String?
        /// "" = every collection of `db` except `system.*`.
        var collection: String?
        var anyResource = false
        var actions: Set<String>
    }

    let grants: [Grant]

    /// nil when no user is authenticated: authorization is off (anything goes) or there is nothing to judge.
    init?(connectionStatus reply: Document) {
        guard case .array(let users)? = reply.value(at: "authInfo.authenticatedUsers"), !users.isEmpty else { return nil }
        guard case .array(let privileges)? = reply.value(at: "authInfo.authenticatedUserPrivileges") else { return nil }
        grants = privileges.compactMap { entry -> Grant? in
            guard case .document(let privilege) = entry, case .document(let resource)? = privilege["resource"],
                  case .array(let actions)? = privilege["actions"] else { return nil }
            return Grant(db: resource["db"]?.stringValue, collection: resource["collection"]?.stringValue,
                         anyResource: resource["anyResource"] == .bool(true), actions: Set(actions.compactMap(\.stringValue)))
        }
    }

    init(grants: [Grant]) {
        self.grants = grants
    }

    /// Whether `action` is allowed on `collection` of `db`, or on `db` itself when `collection` is nil.
    func allows(_ action: String, db: String, collection: String?) -> Bool {
        grants.contains { grant in
            guard grant.actions.contains(action) else { return false }
            if grant.anyResource { return true }
            guard let grantDB = grant.db, let grantCollection = grant.collection, grantDB.isEmpty || grantDB == db else { return false }
            guard let collection else { return grantCollection.isEmpty }
            return grantCollection.isEmpty ? !collection.hasPrefix("system.") : grantCollection == collection
        }
    }

    /// The actions of `actions` not allowed there, in their order.
    func missing(_ actions: [String], db: String, collection: String?) -> [String] {
        actions.filter { !allows($0, db: db, collection: collection) }
    }

    /// One line per shortfall for a stream: what it reads or writes, the actions missing, and what they break.
    func problems(for stream: StreamConfig, database: String, tombstones: String) -> [String] {
        var out: [String] = []
        func need(_ actions: [String], _ collection: String?, _ why: String) {
            let lacking = missing(actions, db: database, collection: collection)
            guard !lacking.isEmpty else { return }
            let on = collection.map { "\(database).\($0)" } ?? "database \(database)"
            out.append("the Mongo login lacks \(lacking.joined(separator: ", ")) on \(on): \(why)")
        }
        switch stream.direction {
        case .mongoToRedshift:
            need(["find", "changeStream"], stream.collection, "the snapshot and the change stream need them")
        case .redshiftToMongo:
            need(["find", "insert", "update", "remove"], stream.collection, "applying rows needs them")
            need(["find", "insert", "update", "remove"], tombstones, "deletes keep version tombstones there")
        }
        return out
    }
}

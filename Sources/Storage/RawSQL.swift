import GRDB
import GRDBSQLite

/// Apply's hot statements, bound, stepped and reset through SQLite's C API.
///
/// The statements are GRDB's (`cachedStatement`: GRDB prepares them, finalizes them with the
/// connection and re-prepares them after a schema change); only their execution skips GRDB's
/// `StatementArguments`, which boxes every argument in an existential and copies it into an
/// array of `DatabaseValue` before binding (measured: 13 % of a new customer's apply). Nothing
/// here may change transaction state: these are plain INSERT, UPDATE and SELECT statements run
/// inside the transaction GRDB opened, so GRDB's bookkeeping (savepoints, autocommit, observers,
/// of which Storage registers none) stays exact. Every statement is reset before it is returned,
/// so GRDB finds it idle.
struct RawStatement {
    let statement: Statement
    private var handle: OpaquePointer { statement.sqliteStatement }

    init(_ db: Database, _ sql: String) throws {
        statement = try db.cachedStatement(sql: sql)
    }

    /// Binds `bind`'s values (in placeholder order) and runs the statement to completion.
    func execute(_ bind: (inout Bindings) -> Void) throws {
        self.bind(bind)
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE else { throw failure(code) }
        sqlite3_reset(handle)
    }

    /// Binds `bind`'s values and reads the first row with `read`, or nil when there is none.
    func fetchOne<T>(_ bind: (inout Bindings) -> Void, _ read: (Columns) throws -> T) throws -> T? {
        try first(bind) { .some(try read($0)) }
    }

    /// Steps through the rows until `read` returns a value (or the rows run out); `read` must not
    /// use the database.
    func first<T>(_ bind: (inout Bindings) -> Void, _ read: (Columns) throws -> T?) throws -> T? {
        self.bind(bind)
        while true {
            let code = sqlite3_step(handle)
            switch code {
            case SQLITE_ROW:
                let value: T?
                do {
                    value = try read(Columns(handle: handle))
                } catch {
                    sqlite3_reset(handle)
                    throw error
                }
                if let value {
                    sqlite3_reset(handle)
                    return value
                }
            case SQLITE_DONE:
                sqlite3_reset(handle)
                return nil
            default:
                throw failure(code)
            }
        }
    }

    /// Binds every placeholder through `bind`; binding fewer or more values is a programming error.
    private func bind(_ bind: (inout Bindings) -> Void) {
        var bindings = Bindings(handle)
        bind(&bindings)
        let expected = Int(sqlite3_bind_parameter_count(handle))
        precondition(bindings.count == expected, "\(bindings.count) values bound, \(expected) expected, for: \(statement.sql)")
    }

    /// The error of a failed step, with SQLite's message; resets the statement so it can run again.
    private func failure(_ code: CInt) -> DatabaseError {
        let message = String(cString: sqlite3_errmsg(sqlite3_db_handle(handle)))
        sqlite3_reset(handle)
        return DatabaseError(resultCode: ResultCode(rawValue: code), message: message, sql: statement.sql)
    }
}

/// The values of one execution, bound in placeholder order. SQLite copies each text and blob
/// (`SQLITE_TRANSIENT`), so nothing here outlives the call that binds it.
struct Bindings {
    private let handle: OpaquePointer
    private(set) var count: Int32 = 0

    fileprivate init(_ handle: OpaquePointer) { self.handle = handle }

    private static let transient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

    mutating func add(_ value: String) {
        count += 1
        var value = value
        let index = count
        value.withUTF8 { utf8 in
            // An empty buffer may have no base address, which SQLite would bind as NULL.
            if let base = utf8.baseAddress {
                _ = base.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
                    sqlite3_bind_text(handle, index, $0, CInt(utf8.count), Self.transient)
                }
            } else {
                _ = sqlite3_bind_text(handle, index, "", 0, Self.transient)
            }
        }
    }

    mutating func add(_ value: String?) {
        if let value { add(value) } else { addNull() }
    }

    mutating func add(_ value: Int64) {
        count += 1
        sqlite3_bind_int64(handle, count, value)
    }

    mutating func add(_ value: Int64?) {
        if let value { add(value) } else { addNull() }
    }

    mutating func add(_ value: Int) { add(Int64(value)) }

    mutating func add(_ value: Bool) { add(Int64(value ? 1 : 0)) }

    mutating func add(blob value: [UInt8]) {
        count += 1
        let index = count
        value.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress {
                _ = sqlite3_bind_blob(handle, index, base, CInt(bytes.count), Self.transient)
            } else {
                _ = sqlite3_bind_zeroblob(handle, index, 0)
            }
        }
    }

    mutating func addNull() {
        count += 1
        sqlite3_bind_null(handle, count)
    }
}

/// The current row of a stepped statement, read by column position (0-based).
struct Columns {
    fileprivate let handle: OpaquePointer

    func string(_ column: CInt) -> String {
        guard let text = sqlite3_column_text(handle, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
    }

    func optionalString(_ column: CInt) -> String? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : string(column)
    }

    func int64(_ column: CInt) -> Int64 { sqlite3_column_int64(handle, column) }

    func optionalInt64(_ column: CInt) -> Int64? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : int64(column)
    }

    func int(_ column: CInt) -> Int { Int(sqlite3_column_int64(handle, column)) }
}

import Channels
import ContactCenter

/// Shape checks done before proposing (apply checks state). Each failure is a 422 naming the field.
enum Validate {
    static let nameBytesMax = Limits.nameBytesMax
    static let textBytesMax = Limits.textBytesMax
    static let listCountMax = 32
    static let keywordsCountMax = 50
    static let attributesCountMax = Limits.contactAttributesPerRequestMax
    static let attributeValueBytesMax = Limits.attributeValueBytesMax
    /// Counted in Unicode code points, as JSON Schema's `minLength`/`maxLength` count (at most 800 bytes).
    static let passwordCharactersRange = 8...200

    /// A new password: 8 to 200 characters (code points).
    static func password(_ value: String) throws -> String {
        let count = value.unicodeScalars.count
        guard passwordCharactersRange.contains(count) else {
            throw APIError.invalid(
                "password must be \(passwordCharactersRange.lowerBound) to \(passwordCharactersRange.upperBound) characters, got \(count)",
                field: "password")
        }
        return value
    }

    /// A single-line name: trimmed, non-empty, no control characters, bounded.
    static func name(_ value: String, field: String) throws -> String {
        let trimmed = trimming(value, where: isSpace)
        guard !trimmed.isEmpty else { throw APIError.invalid("\(field) must not be empty", field: field) }
        guard trimmed.utf8.count <= nameBytesMax else { throw APIError.invalid("\(field) exceeds \(nameBytesMax) bytes", field: field) }
        guard !trimmed.unicodeScalars.contains(where: isControl) else {
            throw APIError.invalid("\(field) must not contain control characters", field: field)
        }
        return trimmed
    }

    /// An inbox setting: one line, no control characters, at most `attributeValueBytesMax`
    /// bytes; `apiBase` and `webhookBase` an http or https URL without a trailing slash,
    /// `smtpPort` a port, `address` an e-mail address. Creating and changing an inbox both check
    /// here.
    static func setting(_ value: String, key: String, field: String) throws -> String {
        let trimmed = trimming(value, where: isSpace)
        guard !trimmed.isEmpty, trimmed.utf8.count <= attributeValueBytesMax, !trimmed.unicodeScalars.contains(where: isControl) else {
            throw APIError.invalid("\(field) must be 1 to \(attributeValueBytesMax) bytes on one line", field: field)
        }
        if key == "apiBase" || key == "webhookBase" {
            guard trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://"), !trimmed.hasSuffix("/") else {
                throw APIError.invalid("\(field) must be an http:// or https:// URL without a trailing slash", field: field)
            }
        }
        if key == "smtpPort", Int(trimmed).map({ (1...65535).contains($0) }) != true {
            throw APIError.invalid("\(field) must be a port number, 1 to 65535", field: field)
        }
        if key == "address", EmailInbound.mailbox(trimmed)?.address != trimmed.lowercased() {
            throw APIError.invalid("\(field) must be an e-mail address", field: field)
        }
        return trimmed
    }

    /// Message text: non-blank, bounded; newlines allowed.
    static func text(_ value: String, field: String) throws -> String {
        guard !value.unicodeScalars.allSatisfy(isSpaceOrNewline) else {
            throw APIError.invalid("\(field) must not be empty", field: field)
        }
        guard value.utf8.count <= textBytesMax else { throw APIError.invalid("\(field) exceeds \(textBytesMax) bytes", field: field) }
        return value
    }

    /// General category Cc; ASCII answered without the Unicode tables (names are nearly all ASCII).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar.value < 0x20 || scalar.value == 0x7F }
        return scalar.properties.generalCategory == .control
    }

    /// Foundation's `.whitespaces`: tab and the space separators (Zs).
    static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar == " " || scalar == "\t" }
        return scalar.properties.generalCategory == .spaceSeparator
    }

    /// Foundation's `.whitespacesAndNewlines`: `isSpace`, U+000A-U+000D, U+0085 and the line and
    /// paragraph separators.
    static func isSpaceOrNewline(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar == " " || (0x09...0x0D).contains(scalar.value) }
        if scalar.value == 0x85 { return true }
        switch scalar.properties.generalCategory {
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    /// `value` without the leading and trailing scalars `trim` accepts. What `trimmingCharacters`
    /// does, without its bridging through NSString (which cost ~3 % of a node's CPU on the inbound
    /// message path); the common case, nothing to trim, returns `value` itself.
    static func trimming(_ value: String, where trim: (Unicode.Scalar) -> Bool) -> String {
        let scalars = value.unicodeScalars
        guard let first = scalars.firstIndex(where: { !trim($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !trim($0) })!
        if first == scalars.startIndex, scalars.index(after: last) == scalars.endIndex { return value }
        return String(scalars[first...last])
    }

    static func names(_ values: [String], field: String, max: Int = listCountMax) throws -> [String] {
        guard values.count <= max else { throw APIError.invalid("\(field) has more than \(max) entries", field: field) }
        var seen = Set<String>()
        return try values.map { try name($0, field: field) }.filter { seen.insert($0).inserted }
    }

    static func enumValue<T: RawRepresentable & CaseIterable>(_ raw: String, _ type: T.Type, field: String) throws -> T where T.RawValue == String {
        guard let value = T(rawValue: raw) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw APIError.invalid("\(field) must be one of: \(allowed); got '\(raw)'", field: field)
        }
        return value
    }

    static func email(_ value: String) throws -> String {
        let email = try name(value, field: "email").lowercased()
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !email.contains(" ") else {
            throw APIError.invalid("email must look like name@example.com", field: "email")
        }
        return email
    }

    static func range(_ value: Int, _ range: ClosedRange<Int>, field: String) throws -> Int {
        guard range.contains(value) else { throw APIError.invalid("\(field) must be in \(range.lowerBound)...\(range.upperBound)", field: field) }
        return value
    }

    static func attributes(_ map: [String: String?], field: String) throws -> [String: String?] {
        guard map.count <= attributesCountMax else { throw APIError.invalid("\(field) has more than \(attributesCountMax) keys", field: field) }
        var result: [String: String?] = [:]
        for (key, value) in map {
            let key = try name(key, field: "\(field).\(key)")
            if let value, value.utf8.count > attributeValueBytesMax {
                throw APIError.invalid("\(field).\(key) exceeds \(attributeValueBytesMax) bytes", field: "\(field).\(key)")
            }
            result[key] = value
        }
        return result
    }

    /// `If-Match` (RFC 9110 §13.1.1), if present: `*` matches any current version (nil), one
    /// entity tag `"<version>"` (or `W/"<version>"`) asks for that version. A tag that is not a
    /// version of ours can match nothing: 412 at once. Several tags are not supported (400).
    static func ifMatch(_ header: String?) throws -> Int64? {
        guard let header else { return nil }
        let tags = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if tags.contains("*") { return nil }
        guard tags.count == 1, var tag = tags.first else {
            throw APIError(.badRequest, "invalid_if_match", "If-Match must be * or one entity tag such as \"3\"", field: "If-Match")
        }
        if tag.hasPrefix("W/") { tag.removeFirst(2) }
        guard tag.count >= 3, tag.first == "\"", tag.last == "\"", let version = Int64(tag.dropFirst().dropLast()), version >= 0 else {
            throw APIError(
                .preconditionFailed, "version_mismatch", "If-Match \(tags[0].prefix(64)) matches no version of this resource", field: "If-Match")
        }
        return version
    }
}

import Foundation

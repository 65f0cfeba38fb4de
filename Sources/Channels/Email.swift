import Foundation

/// E-mail in: an inbound-parse webhook in SendGrid's documented format (`multipart/form-data`
/// with the fields `from`, `to`, `cc`, `subject`, `text`, `html`, `headers` (the raw header
/// block), `envelope`, `charsets`, `attachments` (a count), `attachment-info` (JSON) and the files
/// `attachment1`...). E-mail out: an RFC 5322 message with the headers a mail client threads by.
public enum EmailInbound {
    /// Largest body read (a long e-mail with its HTML part and small attachments).
    public static let bodyBytesMax = 4 << 20
    public static let partsMax = 64
    /// `References` ids kept (the newest).
    public static let referencesMax = 20

    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// One part of a multipart body: its form field name, file name and content type, and bytes.
    public struct Part: Sendable, Equatable {
        public var name: String
        public var filename: String?
        public var contentType: String?
        public var body: [UInt8]
    }

    public struct Attachment: Sendable, Equatable {
        public var filename: String
        public var contentType: String?
        public var bytes: Int
    }

    public struct Message: Sendable, Equatable {
        public var fromAddress: String
        public var fromName: String?
        public var to: String
        public var subject: String
        /// The plain text part, else the HTML part without its tags.
        public var text: String
        /// `Message-ID`, with its angle brackets; a stand-in made from the body when missing.
        public var messageId: String
        public var inReplyTo: String?
        /// `References`, oldest first, at most `referencesMax`.
        public var references: [String]
        public var attachments: [Attachment]
    }

    /// The boundary of a `multipart/form-data` content type.
    public static func boundary(contentType: String?) -> String? {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == "boundary" {
                let value = pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return value.isEmpty || value.utf8.count > 70 ? nil : value
            }
        }
        return nil
    }

    /// The parts of a `multipart/form-data` body (RFC 7578). Throws on a missing boundary, a
    /// part without `Content-Disposition: form-data; name=...`, or a bound passed.
    public static func parts(_ body: [UInt8], boundary: String) throws(DecodeError) -> [Part] {
        guard body.count <= bodyBytesMax else { throw DecodeError("the body is over \(bodyBytesMax) bytes") }
        let delimiter = Array("--\(boundary)".utf8)
        var positions: [Int] = []
        var index = 0
        while let found = find(delimiter, in: body, from: index) {
            positions.append(found)
            index = found + delimiter.count
            guard positions.count <= partsMax + 1 else { throw DecodeError("more than \(partsMax) parts") }
        }
        guard positions.count >= 2 else { throw DecodeError("the body has no parts delimited by the boundary") }
        var parts: [Part] = []
        for (start, end) in zip(positions, positions.dropFirst()) {
            var partStart = start + delimiter.count
            // The line break after the delimiter; the one before the next delimiter ends the part.
            if body[partStart...].starts(with: [13, 10]) { partStart += 2 } else if body[partStart...].starts(with: [10]) { partStart += 1 }
            var partEnd = end
            if partEnd >= 2, body[partEnd - 2] == 13, body[partEnd - 1] == 10 { partEnd -= 2 } else if partEnd >= 1, body[partEnd - 1] == 10 { partEnd -= 1 }
            guard partStart <= partEnd else { throw DecodeError("a part ends before it starts") }
            let part = Array(body[partStart..<partEnd])
            guard let split = find([13, 10, 13, 10], in: part, from: 0).map({ ($0, 4) }) ?? find([10, 10], in: part, from: 0).map({ ($0, 2) }) else {
                throw DecodeError("a part has no blank line after its headers")
            }
            guard let headerText = String(validating: part[..<split.0], as: UTF8.self) else { throw DecodeError("a part's headers are not UTF-8") }
            var name: String?, filename: String?, contentType: String?
            for line in headerText.split(whereSeparator: \.isNewline) {
                let pair = line.split(separator: ":", maxSplits: 1)
                guard pair.count == 2 else { continue }
                let field = pair[0].trimmingCharacters(in: .whitespaces).lowercased()
                let value = pair[1].trimmingCharacters(in: .whitespaces)
                if field == "content-disposition" {
                    name = parameter("name", in: value)
                    filename = parameter("filename", in: value)
                } else if field == "content-type" {
                    contentType = value
                }
            }
            guard let name, !name.isEmpty else { throw DecodeError("a part has no Content-Disposition name") }
            parts.append(Part(name: name, filename: filename, contentType: contentType, body: Array(part[(split.0 + split.1)...])))
        }
        return parts
    }

    /// Reads SendGrid's fields into a message. Throws when `from` has no address or the text
    /// fields are not UTF-8.
    public static func message(_ parts: [Part]) throws(DecodeError) -> Message {
        func field(_ name: String) throws(DecodeError) -> String? {
            guard let part = parts.first(where: { $0.name == name && $0.filename == nil }) else { return nil }
            guard let text = String(validating: part.body, as: UTF8.self) else { throw DecodeError("\(name) is not UTF-8") }
            return text
        }
        guard let from = try field("from"), let (address, name) = mailbox(from) else {
            throw DecodeError("from has no e-mail address")
        }
        let headers = header(block: try field("headers") ?? "")
        let plain = try field("text") ?? ""
        let html = try field("html")
        let text = plain.isEmpty ? html.map(stripTags) ?? "" : plain
        let subjectField = try field("subject")
        let subject = subjectField ?? headers["subject"] ?? ""
        let messageId = headers["message-id"].flatMap(messageIds(in:))?.first
            ?? "<\(Data(Array("\(address)\n\(subject)\n\(text)".utf8)).base64EncodedString().prefix(40))@switchboard.invalid>"
        let references = headers["references"].flatMap(messageIds(in:)) ?? []
        let attachments = parts.filter { $0.filename != nil }.map {
            Attachment(filename: $0.filename ?? "", contentType: $0.contentType, bytes: $0.body.count)
        }
        let to = try field("to") ?? ""
        return Message(
            fromAddress: address, fromName: name, to: to, subject: subject, text: text, messageId: messageId,
            inReplyTo: headers["in-reply-to"].flatMap(messageIds(in:))?.first, references: Array(references.suffix(referencesMax)),
            attachments: attachments)
    }

    /// `"Lucía Pérez" <lucia@example.com>` or `lucia@example.com`: the address (lowercased) and
    /// the display name.
    public static func mailbox(_ text: String) -> (address: String, name: String?)? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var address = trimmed, name: String?
        if let open = trimmed.lastIndex(of: "<"), let close = trimmed.lastIndex(of: ">"), open < close {
            address = String(trimmed[trimmed.index(after: open)..<close])
            let display = trimmed[..<open].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            name = display.isEmpty ? nil : display
        }
        address = address.trimmingCharacters(in: .whitespaces).lowercased()
        let pieces = address.split(separator: "@", omittingEmptySubsequences: false)
        guard pieces.count == 2, !pieces[0].isEmpty, pieces[1].contains("."), address.utf8.count <= 254,
            !address.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "," })
        else { return nil }
        return (address, name)
    }

    /// A header block, unfolded (RFC 5322 §2.2.3), by lowercased name; the first of each name.
    static func header(block: String) -> [String: String] {
        var fields: [String: String] = [:]
        var current: (String, String)?
        func flush() {
            if let (name, value) = current, fields[name] == nil { fields[name] = value.trimmingCharacters(in: .whitespaces) }
        }
        for line in block.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            let line = line.hasSuffix("\r") ? line.dropLast() : line[...]
            if line.first == " " || line.first == "\t" {
                current?.1 += " " + line.trimmingCharacters(in: .whitespaces)
                continue
            }
            flush()
            let pair = line.split(separator: ":", maxSplits: 1)
            current = pair.count == 2 ? (pair[0].trimmingCharacters(in: .whitespaces).lowercased(), String(pair[1])) : nil
        }
        flush()
        return fields
    }

    /// The `<id@host>` tokens of a Message-ID, In-Reply-To or References value.
    static func messageIds(in value: String) -> [String]? {
        var ids: [String] = []
        var rest = value[...]
        while let open = rest.firstIndex(of: "<"), let close = rest[open...].firstIndex(of: ">") {
            let id = rest[open...close]
            if id.count > 2, id.utf8.count <= 200, !id.contains(where: \.isWhitespace) { ids.append(String(id)) }
            rest = rest[rest.index(after: close)...]
        }
        return ids.isEmpty ? nil : ids
    }

    /// HTML as text: tags dropped, block ends as line breaks, the common entities decoded.
    static func stripTags(_ html: String) -> String {
        var out = "", inTag = false, tag = ""
        for character in html {
            if inTag {
                if character == ">" {
                    inTag = false
                    let name = tag.lowercased().split(separator: " ").first.map(String.init) ?? ""
                    if ["br", "br/", "/p", "/div", "/li", "/tr", "/h1", "/h2", "/h3"].contains(name) { out += "\n" }
                } else {
                    tag.append(character)
                }
            } else if character == "<" {
                inTag = true
                tag = ""
            } else {
                out.append(character)
            }
        }
        for (entity, value) in [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&amp;", "&")] {
            out = out.replacingOccurrences(of: entity, with: value)
        }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func parameter(_ name: String, in value: String) -> String? {
        for piece in value.split(separator: ";").dropFirst() {
            let pair = piece.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0].lowercased() == name { return pair[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        }
        return nil
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var index = start
        let first = needle[0]
        while index <= haystack.count - needle.count {
            if haystack[index] == first, haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

/// An e-mail reply as RFC 5322 text (CRLF line ends), threaded under the customer's message:
/// `In-Reply-To` names it and `References` carries its chain, so the customer's mail client
/// shows the reply in the same thread. The body is UTF-8 in base64; a non-ASCII subject is an
/// RFC 2047 encoded word.
public enum EmailMessage {
    public static func render(
        from: String, fromName: String?, to: String, subject: String, text: String, messageId: String, inReplyTo: String?,
        references: [String], date: Date
    ) -> String {
        var lines: [String] = []
        lines.append("From: " + (fromName.map { "\(encodedWord($0)) <\(from)>" } ?? from))
        lines.append("To: \(to)")
        let replySubject = subject.isEmpty ? "" : (subject.lowercased().hasPrefix("re:") ? subject : "Re: \(subject)")
        lines.append("Subject: \(encodedWord(replySubject))")
        lines.append("Date: \(rfc5322Date(date))")
        lines.append("Message-ID: \(messageId)")
        if let inReplyTo { lines.append("In-Reply-To: \(inReplyTo)") }
        let chain = references + (inReplyTo.map { references.contains($0) ? [] : [$0] } ?? [])
        if !chain.isEmpty { lines.append("References: " + chain.joined(separator: "\r\n ")) }
        lines.append("MIME-Version: 1.0")
        lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append("Content-Transfer-Encoding: base64")
        lines.append("")
        let encoded = Data(text.utf8).base64EncodedString()
        var body: [String] = []
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let end = encoded.index(index, offsetBy: 76, limitedBy: encoded.endIndex) ?? encoded.endIndex
            body.append(String(encoded[index..<end]))
            index = end
        }
        return (lines + body).joined(separator: "\r\n") + "\r\n"
    }

    /// `=?UTF-8?B?...?=` when the text is not plain printable ASCII.
    static func encodedWord(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { !$0.isASCII || $0.value < 0x20 }) else { return text }
        return "=?UTF-8?B?\(Data(text.utf8).base64EncodedString())?="
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}

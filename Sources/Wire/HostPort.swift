/// A `host:port` address as given to flags and stored in cluster files and gossip: the one
/// parser every module uses.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// Nil unless `text` is `host:port` with a port in 0...65535.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), colon > text.startIndex, let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        host = String(text[..<colon])
        self.port = port
    }

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }
}


import Foundation

/// The routes of the contract (`openapi.yaml`, embedded as `OpenAPIDocument`) by path template
/// and method, so a request on a known path with another method is 405 with `Allow`, not 404.
struct RouteTable: Sendable {
    private let templates: [(segments: [Substring], methods: [String])]

    static let contract = RouteTable(json: OpenAPIDocument.json)

    init(json: String) {
        let document = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
        let paths = document?["paths"] as? [String: [String: Any]] ?? [:]
        let verbs = ["get", "head", "post", "put", "patch", "delete"]
        templates = paths.map { path, item in
            (path.split(separator: "/"), verbs.filter { item[$0] != nil }.map { $0.uppercased() })
        }
    }

    /// The methods the contract lists for `path`, or nil when no template matches it. Literal
    /// segments win over parameters, as in the router (`/v1/agents/me` before `/v1/agents/{id}`).
    func methods(for path: String) -> [String]? {
        let segments = path.split(separator: "/")
        var best: (literals: Int, methods: [String])?
        for template in templates where template.segments.count == segments.count {
            var literals = 0
            let matches = zip(template.segments, segments).allSatisfy { pattern, segment in
                if pattern.first == "{" { return true }
                literals += 1
                return pattern == segment
            }
            if matches, literals > best?.literals ?? -1 { best = (literals, template.methods) }
        }
        return best?.methods
    }
}

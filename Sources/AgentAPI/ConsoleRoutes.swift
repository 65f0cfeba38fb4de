import Hummingbird

/// The agent console (`Console/`, built into the binary by `scripts/embed-assets.py`): the page
/// at `/`, its script and its style. Same origin as the API it calls, so the policy allows
/// nothing else: no external script, style, image or connection.
extension API {
    func addConsoleRoutes(to router: Router<APIRequestContext>) {
        router.get("/") { _, _ -> Response in
            Self.asset(ConsoleAssets.index, type: "text/html; charset=utf-8")
        }
        router.get("/console/app.js") { _, _ -> Response in
            Self.asset(ConsoleAssets.script, type: "text/javascript; charset=utf-8")
        }
        router.get("/console/app.css") { _, _ -> Response in
            Self.asset(ConsoleAssets.style, type: "text/css; charset=utf-8")
        }
    }

    /// `no-cache`: a browser revalidates, so a node upgraded under it serves the new console.
    static func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: type, .cacheControl: "no-cache", .xContentTypeOptions: "nosniff",
                .contentSecurityPolicy: "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

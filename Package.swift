// swift-tools-version:6.1
import PackageDescription

// Module layout (see ../shared/DESIGN.md and each module's DESIGN.md), each layer depending only
// on the ones above it:
//   leaf (pure):                 Seeded (SplitMix64, the monotonic clock), Wire (byte codecs, CRC-32C, hex, HostPort)
//   cores (pure, deterministic): RaftCore, RaftWire (its codecs), RaftDriver (carries a Ready
//                                out for the node and the simulator), SWIMCore, ContactCenter,
//                                BalancerCore, LoadTestCore, FuzzTargets (every decoder as a target),
//                                Channels (the providers' webhook formats and signatures)
//   test support:                ClusterTestKit (seeded simulator, also `switchboard simulate`)
//   edges (I/O):                 Storage (raft.log, SQLite), PeerLink (members' TCP link),
//                                Telemetry (the one metrics path), SWIMShell (gossip over UDP),
//                                ServerTLS (certificates, local CA),
//                                NodeRuntime (the node), AgentAPI (HTTP + WebSocket),
//                                Outbound (the leader's sender of replies),
//                                Balancer (the proxy), ClusterFile (local clusters)
//   executables (wiring only):   switchboard, switchboard-loadtest
let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "switchboard", targets: ["switchboard"]),
        .executable(name: "switchboard-loadtest", targets: ["switchboard-loadtest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        // Pure: length-prefixed binary encoding primitives, checksums, addresses.
        .target(name: "Wire", exclude: ["DESIGN.md"]),
        // Pure: Raft messages and the peer link's payloads as bytes (RaftCodec, ClusterFrame).
        .target(name: "RaftWire", dependencies: ["Wire", "RaftCore"], exclude: ["DESIGN.md"]),
        // Pure: the Raft consensus core (elections, replication, reads, membership, snapshots).
        .target(name: "RaftCore", dependencies: ["Seeded"], exclude: ["DESIGN.md"]),
        // Pure: carries a core's Ready out (persist, send, apply, holds, waiters) over small
        // protocols; the node and the simulator both run it.
        // Generic over the state machine and its clients: cross-module optimization lets the
        // node and the simulator specialize it (unspecialized, 40 % of the simulator's time went
        // to generic metadata lookups).
        .target(
            name: "RaftDriver", dependencies: ["RaftCore"], exclude: ["DESIGN.md"],
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]),
        // Pure leaf: seeded randomness (SplitMix64) for every core and the simulator.
        .target(name: "Seeded", exclude: ["DESIGN.md"]),
        // Pure: the SWIM failure detector with Lifeguard, and its packet codec.
        .target(name: "SWIMCore", dependencies: ["Wire", "Seeded"], exclude: ["DESIGN.md"]),
        // Pure: the providers' formats (WhatsApp Cloud API webhooks and signatures, E.164 numbers).
        .target(name: "Channels", dependencies: ["Wire", "Seeded", .product(name: "Crypto", package: "swift-crypto")], exclude: ["DESIGN.md"]),
        // Pure: the balancer's policy (choosing, ejection, readmission, warm-up, retry budget), HTTP/1.1
        // framing, and one client connection of the proxy as a state machine (ProxyExchange).
        .target(name: "BalancerCore", dependencies: ["Seeded"], exclude: ["DESIGN.md"]),
        // Test support (also behind `switchboard simulate`): seeded cluster simulator for RaftCore.
        .target(name: "ClusterTestKit", dependencies: ["RaftCore", "RaftDriver", "RaftWire", "Wire", "SWIMCore", "Seeded"], exclude: ["DESIGN.md"]),
        // Pure: commands, validation, deterministic apply rules, events.
        .target(name: "ContactCenter", dependencies: ["Wire"], exclude: ["DESIGN.md"]),
        // Edge: the durable command log and the SQLite state database.
        .target(
            name: "Storage",
            dependencies: [
                "Wire", "RaftWire", "ContactCenter", "RaftCore", "RaftDriver",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: the node: the Raft loop (persist -> send -> apply -> advance), forwarding to the
        // leader over the peer link, membership, snapshots, events fan-out.
        .target(
            name: "NodeRuntime",
            dependencies: [
                "ContactCenter", "Storage", "RaftCore", "RaftDriver", "RaftWire", "PeerLink", "Wire", "Seeded", "Telemetry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: the one metrics path (swift-metrics over a Prometheus registry) and its helpers.
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: the SWIM shell: one UDP socket (SwiftNIO), packets sealed with AES-GCM (keyring).
        .target(
            name: "SWIMShell",
            dependencies: [
                "SWIMCore", "Wire", "Seeded",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: `switchboard balancer`: the NIO reverse proxy driven by BalancerCore.
        .target(
            name: "Balancer",
            dependencies: [
                "BalancerCore", "SWIMCore", "SWIMShell", "Wire", "Seeded", "ServerTLS", "Telemetry",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: the authenticated TCP link between members (SwiftNIO, HMAC with the cluster secret).
        .target(
            name: "PeerLink",
            dependencies: [
                "Seeded",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: TLS for the client-facing listeners (reloaded certificate files), clients' trust,
        // and the local CA of `cluster up` with `tls = true`.
        .target(
            name: "ServerTLS",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], exclude: ["DESIGN.md"]
        ),
        // Edge: HTTP + WebSocket API (Hummingbird).
        .target(
            name: "AgentAPI",
            dependencies: [
                "Channels", "ContactCenter", "NodeRuntime", "Storage", "RaftCore", "Telemetry",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ], exclude: ["DESIGN.md", "Widget", "Console"]
        ),
        // Edge: the leader's sender of replies through the providers' APIs (async-http-client).
        .target(
            name: "Outbound",
            dependencies: [
                "Channels", "ContactCenter", "NodeRuntime", "Storage", "ServerTLS", "Seeded",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], exclude: ["DESIGN.md"]
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "AgentAPI", "Outbound", "NodeRuntime", "Storage", "Telemetry", "ClusterTestKit", "SWIMCore", "SWIMShell", "Balancer", "BalancerCore", "ClusterFile", "ServerTLS", "PeerLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Edge: a cluster file and the local processes it describes (switchboard cluster, loadtest --spawn).
        .target(
            name: "ClusterFile",
            dependencies: ["SWIMShell", "ServerTLS", "Wire", .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio")],
            exclude: ["DESIGN.md"]),
        // Pure: every decoder of network and disk bytes as a fuzz target (libFuzzer: fuzz/run.sh;
        // seeded mutations in FuzzTargetsTests).
        .target(name: "FuzzTargets", dependencies: ["Wire", "RaftWire", "RaftCore", "SWIMCore", "ContactCenter", "Channels", "Seeded"], exclude: ["DESIGN.md"]),
        // Pure: the load tester's thresholds, summary, arrivals, integrity ledger and recorder.
        .target(
            name: "LoadTestCore", dependencies: ["Seeded", .product(name: "Histogram", package: "hdrhistogram-swift")],
            exclude: ["DESIGN.md"]),
        // The load tester: agents and customers against a running cluster, and the verdict.
        .executableTarget(
            name: "switchboard-loadtest",
            dependencies: [
                "LoadTestCore", "ClusterFile", "RaftCore", "Wire", "ServerTLS", "Seeded", "Channels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ], exclude: ["DESIGN.md"]
        ),
        .testTarget(name: "LoadTestCoreTests", dependencies: ["LoadTestCore"]),
        .testTarget(name: "ChannelsTests", dependencies: ["Channels"]),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets"], exclude: ["corpus"]),
        .testTarget(name: "ContactCenterTests", dependencies: ["ContactCenter", "Wire"]),
        .testTarget(name: "BalancerCoreTests", dependencies: ["BalancerCore", "Seeded"]),
        .testTarget(name: "SWIMCoreTests", dependencies: ["SWIMCore", "ClusterTestKit", "Wire", "Seeded"]),
        .testTarget(
            name: "SWIMShellTests",
            dependencies: ["SWIMShell", "SWIMCore", "Wire", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "RaftCoreTests", dependencies: ["RaftCore", "RaftDriver", "RaftWire", "ClusterTestKit", "Wire", "Seeded"]),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "NodeRuntime", "PeerLink", "RaftCore", "RaftWire", "Storage", "Wire", "Seeded", "ContactCenter", "ClusterFile", "SWIMShell", "ServerTLS",
                "Channels",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "PeerLinkTests",
            dependencies: ["PeerLink", "RaftCore", "RaftWire", "Wire", "ServerTLS", .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "ContactCenter", "RaftCore", "Seeded", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(
            name: "AgentAPITests",
            dependencies: [
                "AgentAPI", "NodeRuntime", "Storage", "ContactCenter", "RaftCore", "RaftWire", "Wire", "Seeded",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
    ]
)

import ArgumentParser
import ClusterFile
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `switchboard cluster`: runs a cluster described by a file (cluster/local.toml) as child
/// processes on this machine, for development, demos and fault drills.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Start, inspect, stop and break a local cluster described by a file (default cluster/local.toml).",
        discussion: """
            up               start every node (the first bootstraps, the others join)
            status           each node's process, readiness and Raft role
            kill n1          kill -9 one node, as a crash would
            restart n1       stop it if running, start it again on its data
            down             SIGTERM every node (a leader hands over first)

            Each node keeps its data and log under <data>/<id>/ (data = .switchboard by \
            default): state.sqlite, raft.log, node.log, pid.
            """,
        subcommands: [Up.self, Status.self, Down.self, Kill.self, Restart.self])

    struct Options: ParsableArguments {
        @Argument(help: "The cluster file.")
        var file = "cluster/local.toml"
    }

    /// One node of the cluster file: `<id> [file]`.
    struct NodeOptions: ParsableArguments {
        @Argument(help: "The node's id.")
        var nodeId: String
        @OptionGroup var options: Options

        func resolve() throws -> (LocalCluster, LocalCluster.Member) {
            let cluster = try LocalCluster(file: options.file)
            return (cluster, try cluster.node(nodeId))
        }
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start every node not already running; wait for a leader and every member.")
        @OptionGroup var options: Options
        @Option(help: "Seconds to wait for the cluster to form.")
        var timeout = 60.0

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            for node in cluster.nodes { try cluster.start(node) }
            print("waiting for a leader and \(cluster.nodes.count) voters...")
            guard let leader = await cluster.waitForLeaderAndVoters(until: .now + .seconds(timeout)) else {
                throw ValidationError("no leader within \(Int(timeout)) s; see \(cluster.dataRoot)/<id>/node.log")
            }
            print("cluster is up; leader \(leader)")
            for node in cluster.nodes { print("  \(node.id)  \(cluster.scheme)://\(node.api)   peer \(node.peer)   log \(cluster.directory(node))/node.log") }
            if let balancer = cluster.balancer {
                try cluster.start(balancer)
                guard await cluster.waitForBalancer(until: .now + .seconds(timeout)) else {
                    throw ValidationError("the balancer took no request within \(Int(timeout)) s; see \(cluster.directory(balancer))/balancer.log")
                }
                print("  balancer  \(cluster.scheme)://\(balancer.api)   (point agents and webhooks here)   log \(cluster.directory(balancer))/balancer.log")
                if let admin = balancer.admin { print("  balancer status page http://\(admin)/   metrics http://\(admin)/metrics") }
            }
            print("admin token: \(cluster.adminToken)")
            let cacert = cluster.caCertificatePath.map { "--cacert \($0) " } ?? ""
            print("try: curl \(cacert)-H 'Authorization: Bearer \(cluster.adminToken)' \(cluster.scheme)://\((cluster.balancer ?? cluster.nodes[0]).api)/v1/cluster")
            if let ca = cluster.caCertificatePath {
                print("TLS: certificates from the cluster's own CA, \(ca); trust it in clients (curl --cacert, switchboard-loadtest --ca-file, or your system's trust store)")
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show each node's process, readiness and Raft view.")
        @OptionGroup var options: Options

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            for node in cluster.nodes {
                let pid = cluster.runningPid(node)
                let ready = await cluster.get("\(cluster.scheme)://\(node.api)/readyz", admin: false)
                let role = await cluster.get("\(cluster.scheme)://\(node.api)/v1/cluster", admin: true).flatMap { view -> String? in
                    guard let nodes = view["nodes"] as? [[String: Any]], let me = nodes.first(where: { $0["id"] as? String == node.id }) else { return nil }
                    return (me["raft"] as? [String: Any])?["role"] as? String
                }
                let state = pid.map { "running (pid \($0))" } ?? "stopped"
                let readiness = ready.map { ($0["ready"] as? Bool ?? false) ? "ready, applied \($0["appliedIndex"] ?? "?")" : "not ready" } ?? "no answer"
                print("\(node.id)  \(state)  \(readiness)  role \(role ?? "-")  \(cluster.scheme)://\(node.api)")
            }
            if let balancer = cluster.balancer {
                print("balancer  \(cluster.runningPid(balancer).map { "running (pid \($0))" } ?? "stopped")  \(cluster.scheme)://\(balancer.api)")
            }
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every node with SIGTERM (SIGKILL after 10 s).")
        @OptionGroup var options: Options

        func run() async throws {
            let cluster = try LocalCluster(file: options.file)
            if let balancer = cluster.balancer { await cluster.stop(balancer) }
            for node in cluster.nodes { await cluster.stop(node) }
        }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "kill -9 one node, as a crash would.")
        @OptionGroup var target: NodeOptions

        func run() async throws {
            let (cluster, node) = try target.resolve()
            guard let pid = cluster.runningPid(node) else { throw ValidationError("\(node.id) is not running") }
            kill(pid, SIGKILL)
            print("killed \(node.id) (pid \(pid)) with SIGKILL")
        }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop one node if it runs, then start it again on its data.")
        @OptionGroup var target: NodeOptions

        func run() async throws {
            let (cluster, node) = try target.resolve()
            await cluster.stop(node)
            try cluster.start(node)
        }
    }
}

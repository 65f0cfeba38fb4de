import ArgumentParser
import Foundation
import Logging
import SWIMShell

/// Secrets come from a file or the environment, never from the command line, where `ps` and
/// `/proc/<pid>/cmdline` show them to every user of the machine.
enum SecretInput {
    /// The secret in `file` (its content, trailing newlines trimmed), else the environment
    /// variable `variable`, else nil. A file others may read is used, with a warning.
    static func resolve(file: String?, variable: String, option: String, logger: Logger?) throws -> String? {
        if let file { return try read(file, option: option, logger: logger) }
        let value = ProcessInfo.processInfo.environment[variable]
        return value?.isEmpty == false ? value : nil
    }

    /// A secret file's content, trailing newlines trimmed; a file others may read is used,
    /// with a warning.
    static func read(_ file: String, option: String, logger: Logger?) throws -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("\(option): cannot read \(file)")
        }
        let secret = text.trimmingCharacters(in: .newlines)
        guard !secret.isEmpty else { throw ValidationError("\(option): \(file) is empty") }
        var status = stat()
        if stat(file, &status) == 0, status.st_mode & 0o077 != 0 {
            logger?.warning(
                "a secret file is readable by others than its owner; `chmod 600` it",
                metadata: ["file": "\(file)", "file.mode": "\(String(status.st_mode & 0o777, radix: 8))"])
        }
        return secret
    }

    /// Previous secrets during a rotation: one per line of `file`, then the comma-separated
    /// `SWITCHBOARD_PREVIOUS_SECRETS`.
    static func previousSecrets(file: String?, logger: Logger?) throws -> [String] {
        try previous(file: file, variable: "SWITCHBOARD_PREVIOUS_SECRETS", option: "--previous-secrets-file", logger: logger)
    }

    /// One value per line of `file`, then the comma-separated `variable`.
    static func previous(file: String?, variable: String, option: String, logger: Logger?) throws -> [String] {
        let fromFile = try file.map { try read($0, option: option, logger: logger).split(whereSeparator: \.isNewline).map(String.init) } ?? []
        let fromEnvironment = (ProcessInfo.processInfo.environment[variable] ?? "").split(separator: ",").map(String.init)
        return (fromFile + fromEnvironment).filter { !$0.isEmpty }
    }

    /// Data files hold customers' messages and password hashes: everything this process
    /// creates is its owner's alone (files 0600, directories 0700), and the data directory
    /// itself is closed to others even when an older version created it open.
    static func restrictFiles(dataDirectory: String?) {
        umask(0o077)
        if let dataDirectory { chmod(dataDirectory, 0o700) }
    }
}

/// `switchboard gossip-key`: the cluster's gossip key, derived from its secret, for the balancer.
struct GossipKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gossip-key",
        abstract: "Print the cluster's gossip key (derived from the cluster secret) for a balancer.",
        discussion: """
            A balancer observes the gossip and needs nothing more: give it this key, not the \
            secret. The key seals gossip packets only; the secret cannot be recovered from it, and \
            the peer link (joining, voting, appending) needs the secret.

              switchboard gossip-key --secret-file cluster.secret > gossip.key && chmod 600 gossip.key
            """)

    @Option(help: "A file holding the cluster secret (or SWITCHBOARD_SECRET).")
    var secretFile: String?

    func run() throws {
        guard let secret = try SecretInput.resolve(file: secretFile, variable: "SWITCHBOARD_SECRET", option: "--secret-file", logger: nil) else {
            throw ValidationError("give the cluster secret: --secret-file or SWITCHBOARD_SECRET")
        }
        print(Keyring.gossipKey(fromSecret: secret))
    }
}

import ArgumentParser
import Foundation
import Logging

/// Secrets come from a file or the environment, never from the command line, where `ps` and
/// `/proc/<pid>/cmdline` show them to every user of the machine.
enum SecretInput {
    /// The secret in `file` (its content, trailing newlines trimmed), else the environment
    /// variable `variable`, else nil. A file others may read is used, with a warning.
    static func resolve(file: String?, variable: String, option: String, logger: Logger?) throws -> String? {
        if let file {
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
        let value = ProcessInfo.processInfo.environment[variable]
        return value?.isEmpty == false ? value : nil
    }

    /// Previous secrets during a rotation: one per line of `file`, then the comma-separated
    /// `SWITCHBOARD_PREVIOUS_SECRETS`.
    static func previousSecrets(file: String?, logger: Logger?) throws -> [String] {
        let fromFile = try resolve(file: file, variable: "", option: "--previous-secrets-file", logger: logger)
            .map { $0.split(whereSeparator: \.isNewline).map(String.init) } ?? []
        let fromEnvironment = (ProcessInfo.processInfo.environment["SWITCHBOARD_PREVIOUS_SECRETS"] ?? "").split(separator: ",").map(String.init)
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

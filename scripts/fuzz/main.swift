// The libFuzzer entry point for one of FuzzTargets (SWITCHBOARD_FUZZ_TARGET); built and run by
// scripts/fuzz.sh with `swiftc -sanitize=fuzzer,address`, never by `swift build`.
import FuzzTargets

#if canImport(Glibc)
import Glibc
#endif

let target: FuzzTarget = {
    let name = getenv("SWITCHBOARD_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.named(name) else {
        fatalError("SWITCHBOARD_FUZZ_TARGET must be one of: \(FuzzTargets.all.map(\.name).joined(separator: ", ")); got '\(name)'")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// With SWITCHBOARD_FUZZ_SEEDS_INTO=<directory>, writes the target's valid encodings there first
/// (libFuzzer starts from the corpus directory it is given).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    guard let directory = getenv("SWITCHBOARD_FUZZ_SEEDS_INTO").map({ String(cString: $0) }) else { return 0 }
    for (index, seed) in target.seeds().enumerated() {
        guard let file = fopen("\(directory)/seed-\(index)", "wb") else { continue }
        _ = seed.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    return 0
}

/// Argon2id, version 0x13, as RFC 9106 defines it, with the BLAKE2b (RFC 7693) it is built on.
/// Written here because no package in the dependency graph has it (swift-crypto and its
/// BoringSSL offer PBKDF2 and scrypt only), and it is OWASP's first choice for passwords. It is
/// checked against RFC 9106's test vector and against the reference implementation's outputs
/// (`Argon2idTests`).
///
/// Lanes are filled one after another, slice by slice: the segments of a slice do not depend on
/// each other, so the result is the one parallel threads would compute.
public enum Argon2id {
    public struct Parameters: Sendable, Equatable {
        /// Memory in KiB (1 KiB blocks); at least 8 per lane.
        public var memoryKiB: Int
        /// Passes over the memory (`t`).
        public var passes: Int
        /// Lanes (`p`).
        public var lanes: Int
        /// Tag bytes.
        public var tagLength: Int

        public init(memoryKiB: Int, passes: Int, lanes: Int = 1, tagLength: Int = 32) {
            self.memoryKiB = memoryKiB
            self.passes = passes
            self.lanes = lanes
            self.tagLength = tagLength
        }

        /// Bounds on what a hash may ask for: a stored hash is data, and a forged one must not
        /// make a node allocate gigabytes or spin for minutes.
        public static let memoryKiBMax = 262_144
        public static let passesMax = 32
        public static let lanesMax = 16

        public var isValid: Bool {
            (1...Self.lanesMax).contains(lanes) && (8 * lanes...Self.memoryKiBMax).contains(memoryKiB)
                && (1...Self.passesMax).contains(passes) && (4...64).contains(tagLength)
        }
    }

    public struct InvalidParameters: Error, CustomStringConvertible {
        public var description: String
    }

    static let version: UInt32 = 0x13
    static let type: UInt32 = 2  // Argon2id
    static let syncPoints = 4
    static let wordsPerBlock = 128

    public static func hash(
        password: [UInt8], salt: [UInt8], secret: [UInt8] = [], associatedData: [UInt8] = [], parameters: Parameters
    ) throws -> [UInt8] {
        guard parameters.isValid else { throw InvalidParameters(description: "Argon2id parameters out of bounds: \(parameters)") }
        guard (8...1024).contains(salt.count) else { throw InvalidParameters(description: "salt must be 8...1024 bytes, got \(salt.count)") }
        let lanes = parameters.lanes
        let segmentLength = parameters.memoryKiB / (syncPoints * lanes)
        let laneLength = segmentLength * syncPoints
        let blockCount = laneLength * lanes

        var h0Input: [UInt8] = []
        for value in [UInt32(lanes), UInt32(parameters.tagLength), UInt32(parameters.memoryKiB), UInt32(parameters.passes), version, type] {
            appendLE32(&h0Input, value)
        }
        for field in [password, salt, secret, associatedData] {
            appendLE32(&h0Input, UInt32(field.count))
            h0Input += field
        }
        let h0 = Blake2b.hash(h0Input, length: 64)

        let memory = UnsafeMutablePointer<UInt64>.allocate(capacity: blockCount * wordsPerBlock)
        defer { memory.deallocate() }
        let scratch = UnsafeMutablePointer<UInt64>.allocate(capacity: 4 * wordsPerBlock)
        defer { scratch.deallocate() }
        for lane in 0..<lanes {
            for column in 0..<2 {
                var seed = h0
                appendLE32(&seed, UInt32(column))
                appendLE32(&seed, UInt32(lane))
                store(hPrime(seed, length: 1024), into: memory + (lane * laneLength + column) * wordsPerBlock)
            }
        }
        let instance = Instance(
            memory: memory, scratch: scratch, lanes: lanes, laneLength: laneLength, segmentLength: segmentLength, blockCount: blockCount,
            passes: parameters.passes)
        for pass in 0..<parameters.passes {
            for slice in 0..<syncPoints {
                for lane in 0..<lanes { instance.fillSegment(pass: pass, lane: lane, slice: slice) }
            }
        }
        var final = [UInt64](repeating: 0, count: wordsPerBlock)
        for lane in 0..<lanes {
            let last = memory + (lane * laneLength + laneLength - 1) * wordsPerBlock
            for word in 0..<wordsPerBlock { final[word] ^= last[word] }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1024)
        for word in final { appendLE64(&bytes, word) }
        return hPrime(bytes, length: parameters.tagLength)
    }

    /// H' of RFC 9106 section 3.3: BLAKE2b stretched to `length` bytes.
    static func hPrime(_ input: [UInt8], length: Int) -> [UInt8] {
        var prefixed: [UInt8] = []
        appendLE32(&prefixed, UInt32(length))
        prefixed += input
        guard length > 64 else { return Blake2b.hash(prefixed, length: length) }
        let rounds = (length + 31) / 32 - 2
        var output: [UInt8] = []
        output.reserveCapacity(length)
        var v = Blake2b.hash(prefixed, length: 64)
        output += v[0..<32]
        for _ in 1..<rounds {
            v = Blake2b.hash(v, length: 64)
            output += v[0..<32]
        }
        output += Blake2b.hash(v, length: length - 32 * rounds)
        return output
    }

    private struct Instance {
        let memory: UnsafeMutablePointer<UInt64>
        let scratch: UnsafeMutablePointer<UInt64>
        let lanes: Int
        let laneLength: Int
        let segmentLength: Int
        let blockCount: Int
        let passes: Int

        func block(_ index: Int) -> UnsafeMutablePointer<UInt64> { memory + index * Argon2id.wordsPerBlock }

        func fillSegment(pass: Int, lane: Int, slice: Int) {
            let dataIndependent = pass == 0 && slice < Argon2id.syncPoints / 2
            let zero = scratch
            let input = scratch + 128
            let addresses = scratch + 256
            let work = scratch + 384
            if dataIndependent {
                for word in 0..<384 { scratch[word] = 0 }
                input[0] = UInt64(pass)
                input[1] = UInt64(lane)
                input[2] = UInt64(slice)
                input[3] = UInt64(blockCount)
                input[4] = UInt64(passes)
                input[5] = UInt64(Argon2id.type)
            }
            var start = 0
            if pass == 0 && slice == 0 {
                start = 2
                if dataIndependent { nextAddresses(input: input, zero: zero, addresses: addresses, work: work) }
            }
            var current = lane * laneLength + slice * segmentLength + start
            var previous = current % laneLength == 0 ? current + laneLength - 1 : current - 1
            for index in start..<segmentLength {
                if current % laneLength == 1 { previous = current - 1 }
                let pseudoRandom: UInt64
                if dataIndependent {
                    if index % 128 == 0 { nextAddresses(input: input, zero: zero, addresses: addresses, work: work) }
                    pseudoRandom = addresses[index % 128]
                } else {
                    pseudoRandom = block(previous)[0]
                }
                var referenceLane = Int((pseudoRandom >> 32) % UInt64(lanes))
                if pass == 0 && slice == 0 { referenceLane = lane }
                let referenceIndex = self.referenceIndex(
                    pass: pass, slice: slice, index: index, pseudoRandom: pseudoRandom & 0xFFFF_FFFF, sameLane: referenceLane == lane)
                Argon2id.fillBlock(
                    previous: block(previous), reference: block(referenceLane * laneLength + referenceIndex), next: block(current),
                    withXor: pass > 0, work: work)
                current += 1
                previous += 1
            }
        }

        private func nextAddresses(input: UnsafeMutablePointer<UInt64>, zero: UnsafeMutablePointer<UInt64>, addresses: UnsafeMutablePointer<UInt64>, work: UnsafeMutablePointer<UInt64>) {
            input[6] &+= 1
            Argon2id.fillBlock(previous: zero, reference: input, next: addresses, withXor: false, work: work)
            Argon2id.fillBlock(previous: zero, reference: addresses, next: addresses, withXor: false, work: work)
        }

        /// RFC 9106 section 3.4.2: the reference block's index within its lane.
        private func referenceIndex(pass: Int, slice: Int, index: Int, pseudoRandom: UInt64, sameLane: Bool) -> Int {
            let areaSize: Int
            if pass == 0 {
                if slice == 0 {
                    areaSize = index - 1
                } else {
                    areaSize = sameLane ? slice * segmentLength + index - 1 : slice * segmentLength + (index == 0 ? -1 : 0)
                }
            } else {
                areaSize = sameLane ? laneLength - segmentLength + index - 1 : laneLength - segmentLength + (index == 0 ? -1 : 0)
            }
            let x = (pseudoRandom &* pseudoRandom) >> 32
            let relative = UInt64(areaSize) - 1 - ((UInt64(areaSize) &* x) >> 32)
            let startPosition = pass == 0 || slice == Argon2id.syncPoints - 1 ? 0 : (slice + 1) * segmentLength
            return (startPosition + Int(relative)) % laneLength
        }
    }

    /// The compression G of RFC 9106 section 3.5: `next = (or next ^) R ^ P(R)` with
    /// `R = previous ^ reference`, P applied to the rows, then to the columns.
    @inline(__always)
    static func fillBlock(
        previous: UnsafeMutablePointer<UInt64>, reference: UnsafeMutablePointer<UInt64>, next: UnsafeMutablePointer<UInt64>, withXor: Bool,
        work: UnsafeMutablePointer<UInt64>
    ) {
        // `work` holds R; `next` receives R (xor its old value) first, then P(R) is xored in.
        for word in 0..<128 { work[word] = reference[word] ^ previous[word] }
        if withXor {
            for word in 0..<128 { next[word] ^= work[word] }
        } else {
            for word in 0..<128 { next[word] = work[word] }
        }
        for row in 0..<8 {
            let b = 16 * row
            round(work, b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15)
        }
        for column in 0..<8 {
            let b = 2 * column
            round(work, b, b + 1, b + 16, b + 17, b + 32, b + 33, b + 48, b + 49, b + 64, b + 65, b + 80, b + 81, b + 96, b + 97, b + 112, b + 113)
        }
        for word in 0..<128 { next[word] ^= work[word] }
    }

    @inline(__always)
    private static func round(
        _ p: UnsafeMutablePointer<UInt64>, _ i0: Int, _ i1: Int, _ i2: Int, _ i3: Int, _ i4: Int, _ i5: Int, _ i6: Int, _ i7: Int, _ i8: Int,
        _ i9: Int, _ i10: Int, _ i11: Int, _ i12: Int, _ i13: Int, _ i14: Int, _ i15: Int
    ) {
        var v0 = p[i0], v1 = p[i1], v2 = p[i2], v3 = p[i3], v4 = p[i4], v5 = p[i5], v6 = p[i6], v7 = p[i7]
        var v8 = p[i8], v9 = p[i9], v10 = p[i10], v11 = p[i11], v12 = p[i12], v13 = p[i13], v14 = p[i14], v15 = p[i15]
        gb(&v0, &v4, &v8, &v12)
        gb(&v1, &v5, &v9, &v13)
        gb(&v2, &v6, &v10, &v14)
        gb(&v3, &v7, &v11, &v15)
        gb(&v0, &v5, &v10, &v15)
        gb(&v1, &v6, &v11, &v12)
        gb(&v2, &v7, &v8, &v13)
        gb(&v3, &v4, &v9, &v14)
        p[i0] = v0; p[i1] = v1; p[i2] = v2; p[i3] = v3; p[i4] = v4; p[i5] = v5; p[i6] = v6; p[i7] = v7
        p[i8] = v8; p[i9] = v9; p[i10] = v10; p[i11] = v11; p[i12] = v12; p[i13] = v13; p[i14] = v14; p[i15] = v15
    }

    @inline(__always)
    private static func gb(_ a: inout UInt64, _ b: inout UInt64, _ c: inout UInt64, _ d: inout UInt64) {
        a = blaMka(a, b); d = rotateRight(d ^ a, 32)
        c = blaMka(c, d); b = rotateRight(b ^ c, 24)
        a = blaMka(a, b); d = rotateRight(d ^ a, 16)
        c = blaMka(c, d); b = rotateRight(b ^ c, 63)
    }

    @inline(__always)
    private static func blaMka(_ x: UInt64, _ y: UInt64) -> UInt64 {
        x &+ y &+ 2 &* (x & 0xFFFF_FFFF) &* (y & 0xFFFF_FFFF)
    }

    @inline(__always)
    static func rotateRight(_ x: UInt64, _ n: UInt64) -> UInt64 { (x >> n) | (x << (64 - n)) }

    static func appendLE32(_ bytes: inout [UInt8], _ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    static func appendLE64(_ bytes: inout [UInt8], _ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    private static func store(_ bytes: [UInt8], into block: UnsafeMutablePointer<UInt64>) {
        for word in 0..<128 {
            var value: UInt64 = 0
            for byte in 0..<8 { value |= UInt64(bytes[word * 8 + byte]) << UInt64(8 * byte) }
            block[word] = value
        }
    }
}

/// BLAKE2b (RFC 7693), unkeyed, with any output length from 1 to 64 bytes.
enum Blake2b {
    static let iv: [UInt64] = [
        0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b, 0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1, 0x9b05_688c_2b3e_6c1f, 0x1f83_d9ab_fb41_bd6b, 0x5be0_cd19_137e_2179,
    ]
    static let sigma: [[Int]] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ]

    static func hash(_ input: [UInt8], length: Int) -> [UInt8] {
        precondition((1...64).contains(length), "BLAKE2b output is 1...64 bytes")  // callers pass constants
        var h = iv
        h[0] ^= 0x0101_0000 ^ UInt64(length)
        var counter: UInt64 = 0
        var offset = 0
        // Every full block but the last is compressed as it comes; the last (possibly partial,
        // possibly empty for an empty input) carries the final flag.
        while input.count - offset > 128 {
            counter &+= 128
            compress(&h, input, offset, 128, counter: counter, last: false)
            offset += 128
        }
        counter &+= UInt64(input.count - offset)
        compress(&h, input, offset, input.count - offset, counter: counter, last: true)
        var output: [UInt8] = []
        output.reserveCapacity(64)
        for word in h { Argon2id.appendLE64(&output, word) }
        return Array(output.prefix(length))
    }

    private static func compress(_ h: inout [UInt64], _ input: [UInt8], _ offset: Int, _ count: Int, counter: UInt64, last: Bool) {
        var m = [UInt64](repeating: 0, count: 16)
        for index in 0..<count { m[index / 8] |= UInt64(input[offset + index]) << UInt64(8 * (index % 8)) }
        var v = h + iv
        v[12] ^= counter
        if last { v[14] = ~v[14] }
        func g(_ a: Int, _ b: Int, _ c: Int, _ d: Int, _ x: UInt64, _ y: UInt64) {
            v[a] = v[a] &+ v[b] &+ x; v[d] = Argon2id.rotateRight(v[d] ^ v[a], 32)
            v[c] = v[c] &+ v[d]; v[b] = Argon2id.rotateRight(v[b] ^ v[c], 24)
            v[a] = v[a] &+ v[b] &+ y; v[d] = Argon2id.rotateRight(v[d] ^ v[a], 16)
            v[c] = v[c] &+ v[d]; v[b] = Argon2id.rotateRight(v[b] ^ v[c], 63)
        }
        for round in 0..<12 {
            let s = sigma[round % 10]
            g(0, 4, 8, 12, m[s[0]], m[s[1]])
            g(1, 5, 9, 13, m[s[2]], m[s[3]])
            g(2, 6, 10, 14, m[s[4]], m[s[5]])
            g(3, 7, 11, 15, m[s[6]], m[s[7]])
            g(0, 5, 10, 15, m[s[8]], m[s[9]])
            g(1, 6, 11, 12, m[s[10]], m[s[11]])
            g(2, 7, 8, 13, m[s[12]], m[s[13]])
            g(3, 4, 9, 14, m[s[14]], m[s[15]])
        }
        for index in 0..<8 { h[index] ^= v[index] ^ v[index + 8] }
    }
}

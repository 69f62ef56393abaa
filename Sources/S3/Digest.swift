internal import CCrypto
import Foundation

/// SHA-256, HMAC-SHA-256 and MD5 from OpenSSL's libcrypto (the library libcurl links already). SigV4 signing
/// and S3's payload and `Content-MD5` checks need nothing else.
public enum Digest {
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] { digest(bytes, EVP_sha256()) }

    public static func md5(_ bytes: [UInt8]) -> [UInt8] { digest(bytes, EVP_md5()) }

    public static func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.bindMemory(to: UInt8.self).baseAddress, m.count, &out, &length)
            }
        }
        return Array(out.prefix(Int(length)))
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of `length` bytes of a file from `offset`, read in 1 MiB chunks (memory stays flat).
    public static func sha256(file path: String, offset: Int64 = 0, length: Int64? = nil) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let hasher = StreamingHash(EVP_sha256())
        var remaining = length ?? Int64.max
        while remaining > 0 {
            let chunk = try handle.read(upToCount: Int(min(remaining, 1 << 20))) ?? Data()
            if chunk.isEmpty { break }
            hasher.update(chunk)
            remaining -= Int64(chunk.count)
        }
        return hasher.finish()
    }

    private static func digest(_ bytes: [UInt8], _ md: OpaquePointer?) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        bytes.withUnsafeBytes { b in _ = EVP_Digest(b.baseAddress, b.count, &out, &length, md, nil) }
        return Array(out.prefix(Int(length)))
    }
}

/// One EVP digest context; the instance owns it and frees it.
final class StreamingHash {
    private let context: OpaquePointer

    init(_ md: OpaquePointer?) {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, md, nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ data: Data) {
        data.withUnsafeBytes { b in _ = EVP_DigestUpdate(context, b.baseAddress, b.count) }
    }

    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &out, &length)
        return Array(out.prefix(Int(length)))
    }
}

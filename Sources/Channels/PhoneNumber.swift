/// A phone number in E.164 (`+` and 7 to 15 digits, no leading zero), the one form Switchboard
/// keeps: WhatsApp's `wa_id` `5491155550000`, Twilio's `+5491155550000` and a customer's
/// `+54 9 11 5555-0000` are one contact.
public struct PhoneNumber: Sendable, Hashable, CustomStringConvertible {
    /// `+` and the digits.
    public let e164: String

    /// Parses `text`: an optional `+` (or `00`) then digits, with spaces, dots, dashes and
    /// parentheses ignored; nil when what is left is not 7 to 15 digits without a leading zero.
    public init?(_ text: String) {
        var digits: [UInt8] = []
        digits.reserveCapacity(16)
        var sawPlus = false
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                guard digits.count < Self.digitsMax + 2 else { return nil }
                digits.append(byte)
            case UInt8(ascii: "+"):
                guard digits.isEmpty, !sawPlus else { return nil }
                sawPlus = true
            case UInt8(ascii: " "), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "("), UInt8(ascii: ")"):
                continue
            default:
                return nil
            }
        }
        // The international call prefix `00` stands for `+`.
        if !sawPlus, digits.count > 2, digits[0] == UInt8(ascii: "0"), digits[1] == UInt8(ascii: "0") { digits.removeFirst(2) }
        guard (Self.digitsMin...Self.digitsMax).contains(digits.count), digits[0] != UInt8(ascii: "0") else { return nil }
        e164 = "+" + String(decoding: digits, as: UTF8.self)
    }

    /// E.164 allows at most 15 digits; fewer than 7 is no subscriber number anywhere.
    public static let digitsMin = 7
    public static let digitsMax = 15

    /// The digits alone, as WhatsApp's Cloud API names a recipient (`to`, `wa_id`).
    public var digits: String { String(e164.dropFirst()) }

    public var description: String { e164 }
}

import Foundation

/// Whole-word, case- and accent-insensitive keyword matching for rules.
///
/// Text is folded (canonical decomposition, combining marks dropped, lowercased) and split on
/// anything that is not a letter or a digit. A keyword matches when its words appear
/// consecutively among the text's words: `Factura`, `FACTURA.` match `factura`;
/// `facturación` does not.
public enum Keywords {
    public static func words(_ text: String) -> [String] {
        var words: [String] = []
        var current = String.UnicodeScalarView()
        for scalar in text.decomposedStringWithCanonicalMapping.lowercased().unicodeScalars {
            let properties = scalar.properties
            if properties.generalCategory == .nonspacingMark { continue }
            if properties.isAlphabetic || properties.numericType != nil {
                current.append(scalar)
            } else if !current.isEmpty {
                words.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { words.append(String(current)) }
        return words
    }

    /// True when any keyword occurs as whole words in `textWords` (already folded by `words`).
    public static func matches(textWords: [String], keywords: [String]) -> Bool {
        keywords.contains { keyword in
            let needle = words(keyword)
            guard !needle.isEmpty, needle.count <= textWords.count else { return false }
            return (0...(textWords.count - needle.count)).contains { start in
                textWords[start..<start + needle.count].elementsEqual(needle)
            }
        }
    }
}

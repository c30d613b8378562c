/// A JSON value written canonically: object keys sorted, two-space indentation, floats in Swift's
/// shortest round-trip form. Equal values always give equal bytes.
public indirect enum CanonicalJSON: Equatable, Sendable {
    case object([String: CanonicalJSON])
    case array([CanonicalJSON])
    case string(String)
    case integer(Int)
    case float(Float)
    case double(Double)
    case bool(Bool)

    /// The encoded text, ending in a newline.
    public var text: String {
        var out = ""
        write(to: &out, indent: 0)
        return out + "\n"
    }

    /// The encoded text on one line, without spaces (JSON Lines), keys sorted.
    public var line: String {
        switch self {
        case .object(let members):
            return "{"
                + members.keys.sorted().map { CanonicalJSON.quoted($0) + ":" + members[$0]!.line }
                .joined(separator: ",") + "}"
        case .array(let items): return "[" + items.map(\.line).joined(separator: ",") + "]"
        default:
            var out = ""
            write(to: &out, indent: 0)
            return out
        }
    }

    private func write(to out: inout String, indent: Int) {
        let pad = String(repeating: " ", count: indent + 2)
        switch self {
        case .object(let members):
            guard !members.isEmpty else { return out += "{}" }
            out += "{\n"
            for (i, key) in members.keys.sorted().enumerated() {
                out += pad + CanonicalJSON.quoted(key) + ": "
                members[key]!.write(to: &out, indent: indent + 2)
                out += i + 1 < members.count ? ",\n" : "\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        case .array(let items):
            // Arrays of numbers stay on one line: per-channel scales would otherwise fill pages.
            if items.allSatisfy({ if case .object = $0 { return false } else { return true } }) {
                var parts: [String] = []
                for item in items {
                    var text = ""
                    item.write(to: &text, indent: indent)
                    parts.append(text)
                }
                out += "[" + parts.joined(separator: ", ") + "]"
                return
            }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += pad
                item.write(to: &out, indent: indent + 2)
                out += i + 1 < items.count ? ",\n" : "\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .string(let s): out += CanonicalJSON.quoted(s)
        case .integer(let v): out += String(v)
        case .float(let v): out += v.isFinite ? "\(v)" : "null"
        case .double(let v): out += v.isFinite ? "\(v)" : "null"
        case .bool(let v): out += v ? "true" : "false"
        }
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out +=
                        "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                        + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

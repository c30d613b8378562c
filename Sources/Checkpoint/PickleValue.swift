/// A value rebuilt from a pickle stream without executing anything.
///
/// Containers are reference types because pickle fills them after memoising them (a dict is
/// created, stored in the memo, then populated), and later references must see the filled object.
public indirect enum PickleValue: CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for `Int`, kept as text (decimal, or `0x` two's-complement hex from binary forms).
    case bigInt(String)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A reference to a class or function by name; never resolved to code.
    case global(module: String, name: String)
    /// A lazily read PyTorch storage.
    case storage(StorageReference)
    /// A PyTorch tensor: a strided view of a storage.
    case tensor(TensorReference)
    /// An instance of a class this reader does not rebuild, kept as an inert record.
    case object(PickleObject)

    /// The mutable container this value is, if any.
    var container: (any PickleContainer)? {
        switch self {
        case .list(let list): return list
        case .dict(let dict): return dict
        case .object(let object): return object
        default: return nil
        }
    }

    /// A short description of what kind of value this is, for error messages.
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "a bool"
        case .int, .bigInt: return "an int"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .global(let module, let name): return "a reference to \(module).\(name)"
        case .storage: return "a storage"
        case .tensor: return "a tensor"
        case .object(let object): return "an object of class \(object.className)"
        }
    }

    /// A Python-like rendering of simple values; other values by kind.
    public var description: String {
        switch self {
        case .none: return "None"
        case .bool(let value): return value ? "True" : "False"
        case .int(let value): return String(value)
        case .float(let value): return String(value)
        case .string(let value): return "'\(value)'"
        default: return kind
        }
    }
}

/// What the interpreter tracks on a mutable container to keep hostile streams walkable.
protocol PickleContainer: AnyObject {
    /// How deeply values are nested in it, itself counted (an empty container is 1).
    var nesting: Int { get set }
    /// Set once the container sits inside another value; it may not change afterwards.
    var isSealed: Bool { get set }
}

/// A mutable list (or set) inside a pickle.
public final class PickleList: PickleContainer {
    var nesting = 1
    var isSealed = false
    /// The items in order.
    public internal(set) var items: [PickleValue] = []
}

/// A mutable, insertion-ordered dictionary inside a pickle (both `dict` and `OrderedDict`).
public final class PickleDict: PickleContainer {
    var nesting = 1
    var isSealed = false
    /// The key–value pairs in insertion order; a repeated key replaces the earlier value in place.
    public private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let name) = key {
            if let i = stringIndex[name] {
                entries[i].value = value
                return
            }
            stringIndex[name] = entries.count
        }
        entries.append((key, value))
    }

    /// The value stored under a string key.
    public subscript(name: String) -> PickleValue? {
        stringIndex[name].map { entries[$0].value }
    }

    /// The string keys, in order (other keys are skipped).
    public var stringKeys: [String] {
        entries.compactMap { if case .string(let name) = $0.key { return name } else { return nil } }
    }
}

/// An inert instance of a class that is not rebuilt (for example `argparse.Namespace`).
public final class PickleObject: PickleContainer {
    var nesting = 1
    var isSealed = false
    /// `module.name` of the class or function that would have created it.
    public let className: String
    /// The constructor arguments, if any.
    public let arguments: [PickleValue]
    /// The state applied by BUILD, if any.
    public internal(set) var state: PickleValue?

    init(className: String, arguments: [PickleValue]) {
        self.className = className
        self.arguments = arguments
    }
}

/// Element types of PyTorch storages.
public enum StorageElementType: String, Sendable {
    case float32 = "FloatStorage"
    case float64 = "DoubleStorage"
    case float16 = "HalfStorage"
    case bfloat16 = "BFloat16Storage"
    case int64 = "LongStorage"
    case int32 = "IntStorage"
    case int16 = "ShortStorage"
    case int8 = "CharStorage"
    case uint8 = "ByteStorage"
    case bool = "BoolStorage"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
}

/// A storage named by a persistent id: archive record `data/<key>` holding `count` elements.
public struct StorageReference: Sendable {
    /// The record name under `data/`.
    public let key: String
    /// The element type.
    public let elementType: StorageElementType
    /// The number of elements (not bytes).
    public let count: Int
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it: a strided view of a storage.
public struct TensorReference: Sendable {
    /// The storage the elements live in.
    public let storage: StorageReference
    /// The element offset of index (0, 0, …) in the storage.
    public let offset: Int
    /// The extents.
    public let shape: [Int]
    /// The element stride of each dimension.
    public let strides: [Int]
}

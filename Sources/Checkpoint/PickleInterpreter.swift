/// Interprets a pickle stream (protocols 0–5) as data, executing nothing.
///
/// Class and function references (GLOBAL, STACK_GLOBAL) become `.global` names. REDUCE and NEWOBJ
/// only *describe* calls: the few PyTorch rebuild functions a checkpoint needs
/// (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`) are
/// recognised by name and rebuilt as plain values; any other call becomes an inert `PickleObject`.
/// Persistent ids of the form `('storage', <Storage class>, key, location, numel)` become storage
/// references. Memory is bounded by the stream's length: every opcode pushes at most one value.
///
/// Hostile streams cannot build values that later code cannot walk: nesting is bounded (a chain of
/// a million one-element tuples would overflow the stack when released), and a container may not
/// change once it sits inside another value, which rules out cycles. Python's pickler always
/// finishes a container before using it, so real checkpoints never meet either limit.
struct PickleInterpreter {
    /// A stack or memo slot: a value and how deeply nested it is (leaves are 1). Containers keep
    /// their own, growing, nesting; `nesting` is used for the immutable values.
    private struct Entry {
        var value: PickleValue
        var nesting = 1
    }

    private let path: String
    private var reader: ByteReader
    private var stack: [Entry] = []
    private var marks: [Int] = []
    private var memo: [Int: Entry] = [:]
    private var opcodeStart = 0

    /// The largest number of nested MARKs accepted; real checkpoints use a handful.
    static let maximumMarkDepth = 10_000
    /// The deepest nesting of containers accepted; PyTorch checkpoints stay under ten.
    static let maximumNesting = 100
    /// The widest integer accepted, in bytes; a wider one would cost quadratic time to print.
    static let maximumIntegerBytes = 1024

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.path = path
        self.reader = ByteReader(bytes)
    }

    private func failure(_ detail: String) -> CheckpointError {
        .malformedPickle(path: path, offset: opcodeStart, detail: detail)
    }

    private mutating func push(_ value: PickleValue, nesting: Int = 1) {
        stack.append(Entry(value: value, nesting: nesting))
    }

    private mutating func popEntry() throws -> Entry {
        guard let entry = stack.popLast(), stack.count >= (marks.last ?? 0) else {
            throw failure("stack underflow")
        }
        return entry
    }

    private mutating func pop() throws -> PickleValue { try popEntry().value }

    private mutating func popMarked() throws -> [Entry] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw failure("no MARK to pop to") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func topEntry() throws -> Entry {
        guard let entry = stack.last, stack.count > (marks.last ?? 0) else { throw failure("empty stack") }
        return entry
    }

    private mutating func top() throws -> PickleValue { try topEntry().value }

    private static func nesting(of entry: Entry) -> Int {
        entry.value.container?.nesting ?? entry.nesting
    }

    /// Places entries inside a new or growing value: seals their containers against later change
    /// and returns the values with the nesting of a value holding them.
    private func embed(_ entries: [Entry]) throws -> (values: [PickleValue], nesting: Int) {
        var deepest = 0
        for entry in entries {
            entry.value.container?.isSealed = true
            deepest = max(deepest, Self.nesting(of: entry))
        }
        guard deepest < Self.maximumNesting else {
            throw failure("values nested more than \(Self.maximumNesting) deep")
        }
        return (entries.map(\.value), deepest + 1)
    }

    /// Admits children of the given nesting into a container that is still open.
    private func grow(_ target: PickleValue, toHold nesting: Int) throws {
        guard let container = target.container else { return }
        guard !container.isSealed else {
            throw failure("\(target.kind) changes after it was placed inside another value")
        }
        container.nesting = max(container.nesting, nesting)
    }

    private mutating func readLine() throws -> String {
        var bytes: [UInt8] = []
        while true {
            guard let byte = reader.read(UInt8.self) else { throw failure("unterminated text line") }
            if byte == 0x0A { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func readCount<T: FixedWidthInteger>(_: T.Type) throws -> Int {
        guard let raw = reader.read(T.self) else { throw failure("truncated length") }
        guard raw >= 0, UInt64(raw) <= UInt64(reader.remaining) else {
            throw failure("length \(raw) runs past the end of the stream")
        }
        return Int(raw)
    }

    private mutating func readString<T: FixedWidthInteger>(lengthOf: T.Type) throws -> String {
        let count = try readCount(T.self)
        return String(decoding: reader.readBytes(count)!, as: UTF8.self)
    }

    private mutating func readByteArray<T: FixedWidthInteger>(lengthOf: T.Type) throws -> [UInt8] {
        let count = try readCount(T.self)
        return Array(reader.readBytes(count)!)
    }

    private static func integer(fromLittleEndian bytes: [UInt8]) -> PickleValue {
        if bytes.isEmpty { return .int(0) }
        if bytes.count > 8 { return .bigInt(decimal(fromLittleEndian: bytes)) }
        var value: UInt64 = 0
        for (i, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        let bits = bytes.count * 8
        if bits < 64 && bytes.last! & 0x80 != 0 { value |= ~0 << UInt64(bits) }
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func setItems(_ entries: [Entry]) throws {
        guard entries.count % 2 == 0 else { throw failure("SETITEMS with an odd number of items") }
        let target = try top()
        let (items, nesting) = try embed(entries)
        switch target {
        case .dict(let dict):
            try grow(target, toHold: nesting)
            for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
        case .object: try grow(target, toHold: nesting)
        default: throw failure("SETITEM on \(target.kind)")
        }
    }

    private mutating func append(_ entries: [Entry]) throws {
        let target = try top()
        let (items, nesting) = try embed(entries)
        switch target {
        case .list(let list):
            try grow(target, toHold: nesting)
            list.items.append(contentsOf: items)
        case .object: try grow(target, toHold: nesting)
        default: throw failure("APPEND on \(target.kind)")
        }
    }

    private mutating func pushTuple(_ entries: [Entry]) throws {
        let (items, nesting) = try embed(entries)
        push(.tuple(items), nesting: nesting)
    }

    private mutating func pushList(_ entries: [Entry]) throws {
        let (items, nesting) = try embed(entries)
        let list = PickleList()
        list.items = items
        list.nesting = nesting
        push(.list(list))
    }

    /// REDUCE, NEWOBJ and NEWOBJ_EX: the described call's result, nested around its arguments.
    private mutating func pushCall(_ callable: PickleValue, _ arguments: Entry, asInstance: Bool) throws {
        guard case .tuple(let values) = arguments.value else {
            throw failure("\(asInstance ? "NEWOBJ" : "REDUCE") arguments are not a tuple")
        }
        let result =
            asInstance
            ? .object(PickleObject(className: Self.name(of: callable), arguments: values))
            : try call(callable, values)
        if case .object(let object) = result { object.nesting = try embed([arguments]).nesting }
        push(result)
    }

    /// What a described call produces.
    private func call(_ callable: PickleValue, _ arguments: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callable else {
            return .object(PickleObject(className: callable.kind, arguments: arguments))
        }
        switch (module, name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"):
            return .dict(PickleDict())
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            return try rebuildTensor(arguments)
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            guard let first = arguments.first, case .tensor = first else {
                throw failure("_rebuild_parameter without a tensor")
            }
            return first
        default:
            return .object(PickleObject(className: "\(module).\(name)", arguments: arguments))
        }
    }

    private func rebuildTensor(_ arguments: [PickleValue]) throws -> PickleValue {
        guard arguments.count >= 4, case .storage(let storage) = arguments[0], case .int(let offset) = arguments[1],
            case .tuple(let sizeItems) = arguments[2], case .tuple(let strideItems) = arguments[3]
        else { throw failure("_rebuild_tensor_v2 called with unexpected arguments") }
        func ints(_ items: [PickleValue]) throws -> [Int] {
            try items.map {
                guard case .int(let v) = $0 else { throw failure("tensor size or stride is not an integer") }
                return v
            }
        }
        let shape = try ints(sizeItems)
        let strides = try ints(strideItems)
        guard shape.count == strides.count else {
            throw failure("tensor has \(shape.count) sizes but \(strides.count) strides")
        }
        return .tensor(TensorReference(storage: storage, offset: offset, shape: shape, strides: strides))
    }

    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let items) = pid, items.count >= 5, case .string("storage") = items[0],
            case .global(_, let className) = items[1], case .int(let count) = items[4]
        else { throw failure("unsupported persistent id (\(pid.kind))") }
        let key: String
        switch items[2] {
        case .string(let s): key = s
        case .int(let i): key = String(i)
        default: throw failure("storage key is \(items[2].kind)")
        }
        guard let type = StorageElementType(rawValue: className) else {
            throw failure("unknown storage type \(className)")
        }
        guard count >= 0 else { throw failure("negative storage size") }
        return .storage(StorageReference(key: key, elementType: type, count: count))
    }

    /// Runs the stream to its STOP opcode and returns the resulting value.
    mutating func run() throws -> PickleValue {
        while true {
            opcodeStart = reader.position
            guard let opcode = reader.read(UInt8.self) else { throw failure("stream ends without STOP") }
            switch opcode {
            case 0x80:  // PROTO
                guard let version = reader.read(UInt8.self), version <= 5 else {
                    throw failure("unsupported pickle protocol")
                }
            case 0x95:  // FRAME: framing is only a read-ahead hint
                guard reader.read(UInt64.self) != nil else { throw failure("truncated FRAME") }
            case 0x2E:  // STOP
                return try pop()
            case 0x28:  // MARK
                guard marks.count < PickleInterpreter.maximumMarkDepth else { throw failure("MARKs nested too deeply") }
                marks.append(stack.count)
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMarked()  // POP_MARK
            case 0x32: stack.append(try topEntry())  // DUP
            case 0x4E: push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case 0x4B:  // BININT1
                guard let v = reader.read(UInt8.self) else { throw failure("truncated BININT1") }
                push(.int(Int(v)))
            case 0x4D:  // BININT2
                guard let v = reader.read(UInt16.self) else { throw failure("truncated BININT2") }
                push(.int(Int(v)))
            case 0x4A:  // BININT
                guard let v = reader.read(Int32.self) else { throw failure("truncated BININT") }
                push(.int(Int(v)))
            case 0x8A:  // LONG1
                push(PickleInterpreter.integer(fromLittleEndian: try readByteArray(lengthOf: UInt8.self)))
            case 0x8B:  // LONG4
                let bytes = try readByteArray(lengthOf: Int32.self)
                guard bytes.count <= Self.maximumIntegerBytes else {
                    throw failure("an integer of \(bytes.count) bytes is wider than any checkpoint holds")
                }
                push(PickleInterpreter.integer(fromLittleEndian: bytes))
            case 0x49:  // INT (text)
                let line = try readLine()
                switch line {
                case "00": push(.bool(false))
                case "01": push(.bool(true))
                default:
                    guard let v = Int(line) else { throw failure("bad INT literal") }
                    push(.int(v))
                }
            case 0x4C:  // LONG (text)
                var line = try readLine()
                if line.hasSuffix("L") { line.removeLast() }
                guard let first = line.first, first == "-" || first.isNumber, line.dropFirst().allSatisfy(\.isNumber)
                else {
                    throw failure("bad LONG literal")
                }
                push(Int(line).map { .int($0) } ?? .bigInt(line))
            case 0x47:  // BINFLOAT, big-endian
                guard let bits = reader.read(UInt64.self) else { throw failure("truncated BINFLOAT") }
                push(.float(Double(bitPattern: UInt64(bigEndian: bits))))
            case 0x46:  // FLOAT (text)
                guard let v = Double(try readLine()) else { throw failure("bad FLOAT literal") }
                push(.float(v))
            case 0x58: push(.string(try readString(lengthOf: UInt32.self)))  // BINUNICODE
            case 0x8C: push(.string(try readString(lengthOf: UInt8.self)))  // SHORT_BINUNICODE
            case 0x8D: push(.string(try readString(lengthOf: UInt64.self)))  // BINUNICODE8
            case 0x56: push(.string(try readLine()))  // UNICODE (raw-unicode-escape; ASCII suffices)
            case 0x55: push(.string(try readString(lengthOf: UInt8.self)))  // SHORT_BINSTRING
            case 0x54: push(.string(try readString(lengthOf: Int32.self)))  // BINSTRING
            case 0x53:  // STRING (quoted text)
                var line = try readLine()
                if line.count >= 2, let q = line.first, q == "'" || q == "\"", line.last == q {
                    line = String(line.dropFirst().dropLast())
                }
                push(.string(line))
            case 0x43: push(.bytes(try readByteArray(lengthOf: UInt8.self)))  // SHORT_BINBYTES
            case 0x42: push(.bytes(try readByteArray(lengthOf: UInt32.self)))  // BINBYTES
            case 0x8E: push(.bytes(try readByteArray(lengthOf: UInt64.self)))  // BINBYTES8
            case 0x96: push(.bytes(try readByteArray(lengthOf: UInt64.self)))  // BYTEARRAY8
            case 0x29: push(.tuple([]))  // EMPTY_TUPLE
            case 0x74: try pushTuple(try popMarked())  // TUPLE
            case 0x85: try pushTuple([try popEntry()])  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try popEntry()
                let a = try popEntry()
                try pushTuple([a, b])
            case 0x87:  // TUPLE3
                let c = try popEntry()
                let b = try popEntry()
                let a = try popEntry()
                try pushTuple([a, b, c])
            case 0x5D, 0x8F: push(.list(PickleList()))  // EMPTY_LIST, EMPTY_SET
            case 0x6C, 0x91: try pushList(try popMarked())  // LIST, FROZENSET
            case 0x61: try append([try popEntry()])  // APPEND
            case 0x65, 0x90: try append(try popMarked())  // APPENDS, ADDITEMS
            case 0x7D: push(.dict(PickleDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMarked()
                push(.dict(PickleDict()))
                try setItems(items)
            case 0x73:  // SETITEM
                let value = try popEntry()
                let key = try popEntry()
                try setItems([key, value])
            case 0x75: try setItems(try popMarked())  // SETITEMS
            case 0x71:  // BINPUT
                guard let i = reader.read(UInt8.self) else { throw failure("truncated BINPUT") }
                memo[Int(i)] = try topEntry()
            case 0x72:  // LONG_BINPUT
                guard let i = reader.read(UInt32.self) else { throw failure("truncated LONG_BINPUT") }
                memo[Int(i)] = try topEntry()
            case 0x70:  // PUT
                guard let i = Int(try readLine()) else { throw failure("bad PUT index") }
                memo[i] = try topEntry()
            case 0x94: memo[memo.count] = try topEntry()  // MEMOIZE
            case 0x68, 0x6A, 0x67:  // BINGET, LONG_BINGET, GET
                let index: Int?
                switch opcode {
                case 0x68: index = reader.read(UInt8.self).map(Int.init)
                case 0x6A: index = reader.read(UInt32.self).map(Int.init)
                default: index = Int(try readLine())
                }
                guard let index, let entry = memo[index] else { throw failure("memo lookup of an unset index") }
                stack.append(entry)
            case 0x63:  // GLOBAL
                let module = try readLine()
                let name = try readLine()
                push(.global(module: module, name: name))
            case 0x93:  // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw failure("STACK_GLOBAL needs two strings")
                }
                push(.global(module: module, name: name))
            case 0x52, 0x81:  // REDUCE, NEWOBJ
                let arguments = try popEntry()
                try pushCall(try pop(), arguments, asInstance: opcode == 0x81)
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                let arguments = try popEntry()
                try pushCall(try pop(), arguments, asInstance: true)
            case 0x62:  // BUILD
                let target = try top()
                let (state, nesting) = try embed([try popEntry()])
                switch target {
                case .object(let object):
                    try grow(target, toHold: nesting)
                    object.state = state[0]
                case .dict, .tensor, .list: break  // OrderedDict metadata, tensor hooks state: not needed
                default: throw failure("BUILD on \(target.kind)")
                }
            case 0x51:  // BINPERSID
                push(try persistentLoad(try pop()))
            case 0x50:  // PERSID (text)
                throw failure("text persistent ids are not used by PyTorch checkpoints")
            default:
                throw failure("opcode 0x\(String(opcode, radix: 16)) is not supported")
            }
        }
    }

    private static func name(of type: PickleValue) -> String {
        if case .global(let module, let name) = type { return "\(module).\(name)" }
        return type.kind
    }
}

/// The decimal text of a little-endian two's-complement integer of any width.
private func decimal(fromLittleEndian bytes: [UInt8]) -> String {
    let negative = (bytes.last ?? 0) & 0x80 != 0
    var magnitude = bytes
    if negative {
        var carry = 1
        for i in magnitude.indices {
            let v = Int(~magnitude[i]) + carry
            magnitude[i] = UInt8(v & 0xFF)
            carry = v >> 8
        }
    }
    var digits: [Character] = []
    var bigEndian = Array(magnitude.reversed())
    while bigEndian.contains(where: { $0 != 0 }) {
        var remainder = 0
        for i in bigEndian.indices {
            let v = remainder << 8 | Int(bigEndian[i])
            bigEndian[i] = UInt8(v / 10)
            remainder = v % 10
        }
        digits.append(Character(String(remainder)))
    }
    return (negative ? "-" : "") + (digits.isEmpty ? "0" : String(digits.reversed()))
}

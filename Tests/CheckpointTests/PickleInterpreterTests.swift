import Foundation
import TestSupport
import Testing

@testable import Checkpoint

/// Pickles of `{'name': 'vim', 'values': [1, -2, 300, 70000, -2**40, 2**70, 2.5, None, True, False],
/// 'pair': (1, 'b'), 'nested': {'k': [b'\x00\x01']}}` as CPython 3.11's `pickle.dumps` writes them.
let referencePickles: [(protocol: Int, hex: String)] = [
    (
        0,
        "286470300a566e616d650a70310a5676696d0a70320a735676616c7565730a70330a286c70340a49310a61492d320a61493330300a614937303030300a614c2d313039393531313632373737364c0a614c313138303539313632303731373431313330333432344c0a6146322e350a614e614930310a614930300a617356706169720a70350a2849310a56620a70360a7470370a73566e65737465640a70380a286470390a566b0a7031300a286c7031310a635f636f646563730a656e636f64650a7031320a28565c7530303030010a7031330a566c6174696e310a7031340a747031350a527031360a6173732e"
    ),
    (
        2,
        "80027d71002858040000006e616d657101580300000076696d7102580600000076616c75657371035d7104284b014afeffffff4d2c014a701101008a060000000000ff8a090000000000000000404740040000000000004e88896558040000007061697271054b01580100000062710686710758060000006e657374656471087d710958010000006b710a5d710b635f636f646563730a656e636f64650a710c58020000000001710d58060000006c6174696e31710e86710f5271106173752e"
    ),
    (
        4,
        "80049574000000000000007d94288c046e616d65948c0376696d948c0676616c756573945d94284b014afeffffff4d2c014a701101008a060000000000ff8a090000000000000000404740040000000000004e8889658c0470616972944b018c01629486948c066e6573746564947d948c016b945d9443020001946173752e"
    ),
    (
        5,
        "80059574000000000000007d94288c046e616d65948c0376696d948c0676616c756573945d94284b014afeffffff4d2c014a701101008a060000000000ff8a090000000000000000404740040000000000004e8889658c0470616972944b018c01629486948c066e6573746564947d948c016b945d9443020001946173752e"
    ),
]

func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = hex.startIndex
    while i < hex.endIndex {
        let j = hex.index(i, offsetBy: 2)
        out.append(UInt8(hex[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func interpret(_ pickle: [UInt8]) throws -> PickleValue {
    try pickle.withUnsafeBytes { raw in
        var interpreter = PickleInterpreter(bytes: raw, path: "test.pkl")
        return try interpreter.run()
    }
}

@Suite("Pickle interpreter")
struct PickleInterpreterTests {
    @Test("reads every protocol CPython writes", arguments: referencePickles)
    func readsProtocols(_ sample: (protocol: Int, hex: String)) throws {
        guard case .dict(let root) = try interpret(bytes(hex: sample.hex)) else {
            Issue.record("protocol \(sample.protocol): not a dict")
            return
        }
        #expect(root.stringKeys == ["name", "values", "pair", "nested"])
        guard case .string("vim") = root["name"], case .list(let values) = root["values"],
            case .tuple(let pair) = root["pair"]
        else {
            Issue.record("protocol \(sample.protocol): wrong types")
            return
        }
        #expect(
            values.items.map(\.description) == [
                "1", "-2", "300", "70000", "-1099511627776", "an int", "2.5", "None", "True", "False",
            ])
        if case .bigInt(let text) = values.items[5] {
            #expect(text == "1180591620717411303424")
        } else {
            Issue.record("2**70 should be a big integer")
        }
        #expect(pair.map(\.description) == ["1", "'b'"])
    }

    @Test("a call to an unknown function becomes an inert object, never a call")
    func unknownGlobalIsInert() throws {
        var p = PickleBuilder()
        p.global("os", "system")
        p.mark()
        p.string("echo pwned")
        p.tuple()
        p.reduce()
        p.stop()
        guard case .object(let object) = try interpret(p.bytes) else {
            Issue.record("expected an inert object")
            return
        }
        #expect(object.className == "os.system")
        #expect(object.arguments.map(\.description) == ["'echo pwned'"])
    }

    @Test(
        "malformed streams are errors with the byte offset",
        arguments: [
            ([0x80, 0x02] as [UInt8], "stream ends without STOP"),
            ([0x80, 0x02, 0x2E], "stack underflow"),
            ([0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F], "runs past the end"),
            ([0x80, 0x02, 0x68, 0x05, 0x2E], "memo lookup"),
            ([0x80, 0x02, 0x75, 0x2E], "no MARK"),
            ([0x80, 0x02, 0xFF], "opcode 0xff"),
            ([0x80, 0x09], "protocol"),
            ([0x80, 0x02, 0x4E, 0x4E, 0x4E, 0x73, 0x2E], "SETITEM on None"),
        ])
    func malformed(_ sample: ([UInt8], String)) {
        #expect {
            _ = try interpret(sample.0)
        } throws: { error in
            guard case CheckpointError.malformedPickle(let path, _, let detail) = error else { return false }
            return path == "test.pkl" && detail.contains(sample.1)
        }
    }

    @Test("wide integers keep their exact decimal value, negative ones too")
    func wideIntegers() throws {
        // LONG1 of -2**79: ten bytes, little-endian two's complement.
        let pickle: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x2E]
        guard case .bigInt(let text) = try interpret(pickle) else {
            Issue.record("expected a big integer")
            return
        }
        #expect(text == "-604462909807314587353088")
    }

    @Test("a memoised dict filled after it was stored is seen filled")
    func memoSeesLaterFill() throws {
        var p = PickleBuilder()
        p.raw([0x5D])  // EMPTY_LIST
        p.emptyDict()
        p.raw([0x71, 0x00])  // BINPUT 0
        p.mark()
        p.string("k")
        p.int(7)
        p.setItems()
        p.raw([0x61, 0x68, 0x00, 0x61])  // APPEND, BINGET 0, APPEND
        p.stop()
        guard case .list(let list) = try interpret(p.bytes), list.items.count == 2,
            case .dict(let second) = list.items[1]
        else {
            Issue.record("unexpected structure")
            return
        }
        #expect(second["k"]?.description == "7")
    }
}

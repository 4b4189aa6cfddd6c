import Testing
import WavelaneProtocol

struct CloseCodeTests {
    @Test func valuesAreTheRFCs() {
        #expect(CloseCode.normal == 1000)
        #expect(CloseCode.goingAway == 1001)
        #expect(CloseCode.protocolError == 1002)
        #expect(CloseCode.unacceptableData == 1003)
        #expect(CloseCode.noStatus == 1005)
        #expect(CloseCode.abnormal == 1006)
        #expect(CloseCode.invalidPayload == 1007)
        #expect(CloseCode.policyViolation == 1008)
        #expect(CloseCode.messageTooBig == 1009)
        #expect(CloseCode.internalError == 1011)
        #expect(CloseCode.serviceRestart == 1012)
        #expect(CloseCode.tryAgainLater == 1013)
        #expect(CloseCode.tokenExpired == 4001)
        #expect(CloseCode.userDisconnected == 4003)
    }

    @Test func wireCodesFollowRFC6455() {
        let valid: [UInt16] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
        let invalid: [UInt16] = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
        for code in valid { #expect(CloseCode.isValidOnWire(code), "\(code)") }
        for code in invalid { #expect(!CloseCode.isValidOnWire(code), "\(code)") }
    }

    @Test func applicationCodes() {
        // docs/protocol.md: what the application may close with, 1012/1013 (come back later) included.
        let valid: [UInt16] = [1000, 1001, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 3000, 4001, 4999]
        // 1002 and 1010 are the peers' protocol business; 1005/1006/1015 never go on the wire.
        let invalid: [UInt16] = [999, 1002, 1004, 1005, 1006, 1010, 1014, 1015, 2999, 5000]
        for code in valid { #expect(CloseCode.isValidForApplication(code), "\(code)") }
        for code in invalid { #expect(!CloseCode.isValidForApplication(code), "\(code)") }
    }

    @Test func everyApplicationCodeIsValidOnTheWire() {
        for code in UInt16(0)...UInt16(6000) where CloseCode.isValidForApplication(code) {
            #expect(CloseCode.isValidOnWire(code), "\(code)")
        }
    }
}

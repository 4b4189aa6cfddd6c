/// WebSocket close status codes (RFC 6455 §7.4) as Wavelane uses them.
public enum CloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let unacceptableData: UInt16 = 1003
    /// Never sent on the wire: reported to Python when a close frame carried no code.
    public static let noStatus: UInt16 = 1005
    /// Never sent on the wire: reported to Python when the peer vanished without a close frame.
    public static let abnormal: UInt16 = 1006
    public static let invalidPayload: UInt16 = 1007
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011
    public static let serviceRestart: UInt16 = 1012
    public static let tryAgainLater: UInt16 = 1013
    /// Wavelane: the connection's token expired (exp + jwt_leeway passed without a refresh).
    public static let tokenExpired: UInt16 = 4001
    /// Wavelane: the default code of `disconnect_user` (revocation, logout).
    public static let userDisconnected: UInt16 = 4003

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4.1 / §7.4.2 and the IANA
    /// registry): 1000–1003, 1007–1014 and the application range 3000–4999.
    public static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    /// Whether the application (Python) may close a connection with `code`.
    public static func isValidForApplication(_ code: UInt16) -> Bool {
        switch code {
        case 1000, 1001, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 3000...4999: return true
        default: return false
        }
    }
}

// Helpers shared by the policy tests (PoliciesTests, RateLimitsTests, OriginsTests, AdmissionTests).
import NIOCore
import Testing
@testable import WavelaneEngine
import WavelaneProtocol

/// A made-up monotonic clock: `t(1.5)` is 1.5 s after an arbitrary origin.
func t(_ seconds: Double) -> NIODeadline {
    .uptimeNanoseconds(1_000_000_000_000 + UInt64(seconds * 1e9))
}

/// The policies of a configuration given as JSON.
func policies(_ json: String) throws -> PolicyConfiguration {
    try EngineConfiguration(json: JSONParser.parse(json)).policies
}

/// The error a configuration given as JSON is refused with, nil when it is accepted.
func policyError(_ json: String) -> ConfigurationError? {
    do {
        _ = try EngineConfiguration(json: JSONParser.parse(json))
        return nil
    } catch let error as ConfigurationError {
        return error
    } catch {
        Issue.record("unexpected \(error)")
        return nil
    }
}

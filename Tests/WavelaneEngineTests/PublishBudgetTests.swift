import Foundation
import NIOCore
import Testing
@testable import WavelaneEngine


@Suite("PublishBudget")
struct PublishBudgetTests {
    @Test func reservesUpToTheCountAndTheBytes() {
        let budget = PublishBudget(maxBytes: 100, maxCount: 3, wait: .zero)
        #expect(budget.reserve(40, mayWait: false) { true })
        #expect(budget.reserve(40, mayWait: false) { true })
        #expect(!budget.reserve(40, mayWait: false) { true })  // 120 bytes
        #expect(budget.inFlight == (2, 80))  // the refused one is not kept
        #expect(budget.reserve(20, mayWait: false) { true })
        #expect(!budget.reserve(0, mayWait: false) { true })  // a fourth
        budget.release(40)
        #expect(budget.inFlight == (2, 60))
        #expect(budget.reserve(40, mayWait: false) { true })
    }

    @Test func anOversizedPublicationMayGoAlone() {
        let budget = PublishBudget(maxBytes: 100, maxCount: 10, wait: .zero)
        #expect(budget.reserve(500, mayWait: false) { true })
        #expect(!budget.reserve(1, mayWait: false) { true })
        budget.release(500)
        #expect(budget.inFlight == (0, 0))
    }

    @Test func nothingIsReservedWhileClosed() {
        let budget = PublishBudget()
        #expect(!budget.reserve(1, mayWait: true) { false })
        #expect(budget.inFlight == (0, 0))
    }

    @Test func aWaitingPublisherGetsRoomWhenAReplyComesOrGivesUp() {
        let budget = PublishBudget(maxBytes: 10, maxCount: 1, wait: .seconds(5))
        #expect(budget.reserve(1, mayWait: true) { true })
        let start = NIODeadline.now()
        let releaser = Thread { usleep(50_000); budget.release(1) }
        releaser.start()
        #expect(budget.reserve(1, mayWait: true) { true })
        #expect(NIODeadline.now() - start >= .milliseconds(40))
        let impatient = PublishBudget(maxBytes: 10, maxCount: 1, wait: .milliseconds(30))
        #expect(impatient.reserve(1, mayWait: true) { true })
        #expect(!impatient.reserve(1, mayWait: true) { true })
        #expect(impatient.inFlight == (1, 1))
    }
}

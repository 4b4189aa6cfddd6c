// Tests of Sources/WavelaneEngine/LoopCount.swift: the default event-loop count.

import Testing
@testable import WavelaneEngine

@Suite("Default loop count")
struct LoopCountTests {
    @Test func leavesOneCoreForPython() {
        #expect(LoopCount.defaultLoops(affinityCores: 8, quotaCores: nil, onlineCores: 8) == 7)
        #expect(LoopCount.defaultLoops(affinityCores: 2, quotaCores: nil, onlineCores: 2) == 1)
        #expect(LoopCount.defaultLoops(affinityCores: 1, quotaCores: nil, onlineCores: 2) == 1)  // taskset -c 0
    }

    @Test func neverFewerThanOne() {
        #expect(LoopCount.defaultLoops(affinityCores: 1, quotaCores: 1, onlineCores: 1) == 1)
        #expect(LoopCount.defaultLoops(affinityCores: 0, quotaCores: 0, onlineCores: 0) == 1)
        #expect(LoopCount.defaultLoops(affinityCores: nil, quotaCores: nil, onlineCores: 1) == 1)
    }

    @Test func theTighterOfAffinityAndQuota() {
        #expect(LoopCount.defaultLoops(affinityCores: 16, quotaCores: 4, onlineCores: 16) == 3)
        #expect(LoopCount.defaultLoops(affinityCores: 2, quotaCores: 4, onlineCores: 16) == 1)
        #expect(LoopCount.defaultLoops(affinityCores: nil, quotaCores: 3, onlineCores: 16) == 2)
        #expect(LoopCount.defaultLoops(affinityCores: nil, quotaCores: nil, onlineCores: 4) == 3)
    }

    @Test func cpuMaxLines() {
        #expect(LoopCount.quotaCores(cpuMax: "max 100000\n") == nil)
        #expect(LoopCount.quotaCores(cpuMax: "200000 100000\n") == 2)
        #expect(LoopCount.quotaCores(cpuMax: "150000 100000") == 2)  // 1.5 cores round up
        #expect(LoopCount.quotaCores(cpuMax: "50000 100000") == 1)
        #expect(LoopCount.quotaCores(cpuMax: "") == nil)
        #expect(LoopCount.quotaCores(cpuMax: "garbage") == nil)
        #expect(LoopCount.quotaCores(cpuMax: "-1 100000") == nil)
        #expect(LoopCount.quotaCores(cpuMax: "100000 0") == nil)
    }

    @Test func cpuLists() {
        #expect(LoopCount.cpuListCount("0") == 1)
        #expect(LoopCount.cpuListCount("\t0-1\n") == 2)
        #expect(LoopCount.cpuListCount("0-3,8,10-11") == 7)
        #expect(LoopCount.cpuListCount("") == nil)
        #expect(LoopCount.cpuListCount("3-1") == nil)
        #expect(LoopCount.cpuListCount("a-b") == nil)
        #expect(LoopCount.cpuListCount("1-2-3") == nil)
    }

    @Test func cgroupPathFromProcSelf() {
        #expect(LoopCount.cgroupPath(procSelfCgroup: "0::/user.slice/app.service\n") == "/user.slice/app.service")
        #expect(LoopCount.cgroupPath(procSelfCgroup: "4:memory:/x\n1:cpu:/\n0::/\n") == "/")
        #expect(LoopCount.cgroupPath(procSelfCgroup: "1:cpu:/docker/abc\n") == nil)  // v1 only
    }

    @Test func quotaIsTheTightestOnThePathToTheRoot() {
        let files = [
            "/sys/fs/cgroup/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/kubepods/cpu.max": "300000 100000\n",
            "/sys/fs/cgroup/kubepods/pod1/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "600000 100000\n",
        ]
        #expect(LoopCount.quotaCores(cgroupPath: "/kubepods/pod1/c1", read: { files[$0] }) == 3)
        #expect(LoopCount.quotaCores(cgroupPath: "/", read: { files[$0] }) == nil)
        #expect(LoopCount.quotaCores(cgroupPath: "/other", read: { _ in nil }) == nil)
    }

    @Test func detectOnThisMachineIsWithinTheOnlineCores() {
        let n = LoopCount.detect()
        #expect(n >= 1)
        #expect(n <= max(1, LoopCount.affinityCores() ?? 1024))
    }
}

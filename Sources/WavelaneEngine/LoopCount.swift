// The default number of event loops (`threads` = 0): the cores this process may run on, less one
// for Python's thread, at least one. "May run on" is the smaller of the scheduler affinity mask
// (`taskset`, `os.sched_setaffinity`, a cpuset) and the cgroup v2 CPU quota (`cpu.max`, rounded
// up), because NIO's `System.coreCount` ignores the affinity mask: a server pinned to one core of
// a 2-core box got two loops that shared that core with Python (issue #12).
//
// The rule is pure (`defaultLoops`, `quotaCores`, `cgroupPath`); `LoopCount.detect()` reads the
// mask and the cgroup files and applies it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

enum LoopCount {
    /// Event loops for `cores` usable cores: one is left for Python's thread (it drains events and
    /// sends replies), never fewer than one loop.
    static func defaultLoops(affinityCores: Int?, quotaCores: Int?, onlineCores: Int) -> Int {
        var cores = max(1, affinityCores ?? onlineCores)
        if let q = quotaCores { cores = min(cores, max(1, q)) }
        return max(1, cores - 1)
    }

    /// Cores granted by a cgroup v2 `cpu.max` line ("QUOTA PERIOD", or "max PERIOD" for no limit),
    /// rounded up (1.5 cores → 2); nil when unlimited or malformed.
    static func quotaCores(cpuMax line: String) -> Int? {
        let parts = line.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        guard parts.count >= 2, let quota = Int(parts[0]), let period = Int(parts[1]),
              quota > 0, period > 0 else { return nil }
        return (quota + period - 1) / period
    }

    /// The cgroup v2 path of this process from `/proc/self/cgroup` (the "0::/path" line); nil for
    /// cgroup v1-only systems.
    static func cgroupPath(procSelfCgroup text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("0::") {
            return String(line.dropFirst(3))
        }
        return nil
    }

    /// The tightest `cpu.max` quota from this process's cgroup up to the root (a parent's limit
    /// also applies), read through `read(path) -> contents?`.
    static func quotaCores(cgroupPath: String, root: String = "/sys/fs/cgroup",
                           read: (String) -> String?) -> Int? {
        var best: Int? = nil
        var components = cgroupPath.split(separator: "/").map(String.init)
        while true {
            let dir = components.isEmpty ? root : root + "/" + components.joined(separator: "/")
            if let text = read(dir + "/cpu.max"), let q = quotaCores(cpuMax: text) {
                best = min(best ?? q, q)
            }
            if components.isEmpty { break }
            components.removeLast()
        }
        return best
    }

    /// The loop count for `threads` = 0 on this machine, now.
    static func detect() -> Int {
        defaultLoops(affinityCores: affinityCores(), quotaCores: cgroupQuotaCores(),
                     onlineCores: System.coreCount)
    }

    /// CPUs in this thread's scheduler affinity mask (Linux: `Cpus_allowed_list` of
    /// /proc/thread-self/status, which is what `sched_getaffinity(0)` returns), else nil.
    static func affinityCores() -> Int? {
        #if os(Linux)
        guard let status = readSmallFile("/proc/thread-self/status") ?? readSmallFile("/proc/self/status")
        else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
            return cpuListCount(String(line.dropFirst("Cpus_allowed_list:".count)))
        }
        return nil
        #else
        return nil
        #endif
    }

    /// The number of CPUs in a kernel cpu list ("0-3,8,10-11" → 7); nil if malformed or empty.
    static func cpuListCount(_ list: String) -> Int? {
        var total = 0
        for item in list.split(separator: ",") {
            let item = item.trimmingWhitespace()
            if item.isEmpty { continue }
            let ends = item.split(separator: "-", omittingEmptySubsequences: false)
            if ends.count == 1, Int(ends[0]) != nil {
                total += 1
            } else if ends.count == 2, let a = Int(ends[0]), let b = Int(ends[1]), a <= b {
                total += b - a + 1
            } else {
                return nil
            }
        }
        return total > 0 ? total : nil
    }

    static func cgroupQuotaCores() -> Int? {
        #if os(Linux)
        guard let self_ = readSmallFile("/proc/self/cgroup"),
              let path = cgroupPath(procSelfCgroup: self_) else { return nil }
        return quotaCores(cgroupPath: path, read: readSmallFile)
        #else
        return nil
        #endif
    }

    /// The first 8 KB of a file, or nil if it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 8192)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s.removeLast() }
        return s
    }
}

// The Lua scripts Wavelane runs in Redis. Each runs atomically, so a topic's offset, its history
// and its PUBLISH happen in one step: every instance sees one numbering in one order.
// Layout of keys and channels: `ClusterNames` (WavelaneProtocol/ClusterMessage.swift).

enum ClusterScripts {
    /// Publish to a topic. KEYS: meta hash, history list. ARGV: channel, candidate epoch (used when
    /// the topic has none: first publication, or its meta expired), body, history size, TTL in ms.
    /// A new stream records when it began (field `c`, Redis time in ms: see `position`).
    /// Returns the publication's offset. The message published and kept is `<offset>:<epoch>:<body>`.
    static let publish = now + """
        local e = redis.call('HGET', KEYS[1], 'e')
        if not e then
          e = ARGV[2]
          redis.call('HSET', KEYS[1], 'e', e, 'c', string.format('%d', now))
          redis.call('DEL', KEYS[2])
        end
        local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
        local m = string.format('%d', o) .. ':' .. e .. ':' .. ARGV[3]
        local n = tonumber(ARGV[4])
        if n > 0 then
          redis.call('RPUSH', KEYS[2], m)
          redis.call('LTRIM', KEYS[2], -n, -1)
          redis.call('PEXPIRE', KEYS[2], ARGV[5])
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        redis.call('PUBLISH', ARGV[1], m)
        return o
        """

    private static let now = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        """ + "\n"

    /// A topic's position, and what a client missed. Reads only: a topic nobody published to keeps
    /// having no key. KEYS: meta hash, history list. ARGV: the client's epoch (or ""), the last
    /// offset it saw (or -1: position only), TTL in ms (`history_ttl`, as in `publish`).
    /// Returns `{epoch, offset}` (nothing to recover), `{epoch, offset, 0}` (the history no longer
    /// reaches back) or `{epoch, offset, 1, {messages after the client's offset, oldest first}}`.
    /// History entries are contiguous: each publication appends one and trims the oldest.
    ///
    /// A topic without a stream is at `{"~<now ms>", 0}`. Such an epoch read at time t0 names the
    /// stream that begins next, as long as no stream can have begun and expired since t0: one that
    /// began at b >= t0 lives at least TTL, so a stream that began at c with t0 <= c <= t0 + TTL is
    /// the first since t0 (and with none now, none came and went while now <= t0 + TTL).
    static let position = now + """
        local m = redis.call('HMGET', KEYS[1], 'e', 'o', 'c')
        local e = m[1]
        local since = tonumber(ARGV[2])
        local se = ARGV[1]
        local ttl = tonumber(ARGV[3])
        local t0 = nil
        if string.sub(se, 1, 1) == '~' then t0 = tonumber(string.sub(se, 2)) end
        if not e then
          if since == 0 and t0 and t0 <= now and now - t0 <= ttl then
            return {'~' .. string.format('%d', now), 0, 1, {}}
          end
          return {'~' .. string.format('%d', now), 0}
        end
        local o = tonumber(m[2] or '0')
        local c = tonumber(m[3] or '')
        if t0 and c and t0 <= c and c - t0 <= ttl then se = e end
        if since < 0 or e ~= se or since > o then return {e, o} end
        if since == o then return {e, o, 1, {}} end
        local n = redis.call('LLEN', KEYS[2])
        local first = o - n + 1
        if since + 1 < first then return {e, o, 0} end
        return {e, o, 1, redis.call('LRANGE', KEYS[2], since - first + 1, -1)}
        """

    /// Adds or updates a member. KEYS: presence hash. ARGV: field, member JSON, TTL in ms, presence
    /// channel, join event, most members. Values are `<expiry ms>|<member JSON>` (Redis 7.0 has no
    /// per-field expiry). The join event is published only for a new member. Returns 1 for a new
    /// member, 0 for an update, -1 when a new one would exceed the most (nothing written).
    static let join = now + """
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then return -1 end
        local fresh = redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now + tonumber(ARGV[3])) .. '|' .. ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        if fresh == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
        return fresh
        """

    /// Removes a member. KEYS: presence hash. ARGV: field, presence channel, leave event.
    static let leave = """
        local gone = redis.call('HDEL', KEYS[1], ARGV[1])
        if gone == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
        return gone
        """

    /// Heartbeat for one topic. KEYS: presence hash. ARGV: TTL in ms, presence channel, the topic
    /// as a JSON string, then field/member pairs of this instance's members. Rewrites their expiry,
    /// then removes members whose instance stopped refreshing them (crashed), publishing a leave
    /// event for each. Returns how many were removed.
    static let refresh = now + """
        local exp = string.format('%d', now + tonumber(ARGV[1]))
        for i = 4, #ARGV, 2 do
          redis.call('HSET', KEYS[1], ARGV[i], exp .. '|' .. ARGV[i + 1])
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        local all = redis.call('HGETALL', KEYS[1])
        local reaped = 0
        for i = 1, #all, 2 do
          local v = all[i + 1]
          local bar = string.find(v, '|', 1, true)
          if bar and tonumber(string.sub(v, 1, bar - 1)) < now then
            redis.call('HDEL', KEYS[1], all[i])
            redis.call('PUBLISH', ARGV[2], '{"type":"leave","topic":' .. ARGV[3] .. ',"member":' .. string.sub(v, bar + 1) .. '}')
            reaped = reaped + 1
          end
        end
        return reaped
        """

    /// The live members of a topic. KEYS: presence hash. Returns member JSON strings.
    static let members = now + """
        local all = redis.call('HGETALL', KEYS[1])
        local out = {}
        for i = 1, #all, 2 do
          local v = all[i + 1]
          local bar = string.find(v, '|', 1, true)
          if bar and tonumber(string.sub(v, 1, bar - 1)) >= now then out[#out + 1] = string.sub(v, bar + 1) end
        end
        return out
        """
}

/*
 * wavelane.h — the C ABI of the Wavelane engine (libwavelane.so).
 *
 * One shared library holds all Swift code (the protocol layer, the SwiftNIO engine and these
 * functions). Every function is thread-safe unless stated; none of them ever calls back into the
 * caller. Strings are passed as (pointer, length) pairs and need not be NUL-terminated; the
 * library copies whatever it keeps.
 *
 * Errors: every function that can fail takes `char *err, size_t err_len` and, when it fails,
 * writes a NUL-terminated message there (truncated to fit; err may be NULL). Messages that concern
 * a configuration key or an argument start with its name followed by ": " ("code: ...",
 * "priority: ...") so bindings can name it. The library owns every rule: bindings pass values
 * through and report its message.
 *
 * Strings returned by the library: one pattern for all of them (wl_version, wl_config_schema,
 * wl_stats, wl_logs, wl_presence, wl_node). The function stores a malloc'd, NUL-terminated UTF-8
 * string in *out and returns its length in bytes (without the NUL); on failure it returns -1, sets
 * *out to NULL and fills err. The caller frees *out with wl_free. (Events from wl_drain are not
 * strings: they are a batch, freed with wl_batch_free.)
 */
#ifndef WAVELANE_H
#define WAVELANE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WL_ABI_VERSION 5

typedef struct wl_server wl_server;

/* Event kinds delivered by wl_drain. */
enum {
    WL_EV_CONNECT = 1,           /* data: JSON {"user":..,"addr":..,"claims":{..},"path":..}  */
    WL_EV_TEXT = 2,              /* data: UTF-8 text message (validated)                       */
    WL_EV_BINARY = 3,            /* data: binary message                                       */
    WL_EV_DISCONNECT = 4,        /* code: close code (1006 when the peer vanished); data: reason */
    WL_EV_SUBSCRIBE_REQUEST = 5, /* data: JSON {"topics":[..],"id":<client id or null>}        */
    WL_EV_DROPPED = 6,           /* code: messages dropped; data: JSON {"count":n,"bytes":n,"priority":{..}} */
    WL_EV_CLUSTER = 7,           /* conn 0; data: JSON {"redis":"connected"|"disconnected","reason":..,"undelivered":n} */
    WL_EV_REFRESH = 8,           /* a client refreshed its token (same sub); data: JSON {"claims":{..}} */
    WL_EV_RPC = 9,               /* a client's RPC; data: JSON {"method":..,"params":..,"id":..}   */
};

/* Outbound priorities: when a connection's send queue (max_send_queue bytes) is full, queued
 * messages are dropped lowest priority first (oldest first within a priority); critical ones are
 * never dropped (the connection is closed with 1008 instead). */
enum {
    WL_PRIORITY_CRITICAL = 0,
    WL_PRIORITY_HIGH = 1,
    WL_PRIORITY_NORMAL = 2,
    WL_PRIORITY_LOW = 3,
    WL_PRIORITY_BACKGROUND = 4,
};

/* One drained event. `data` stays valid until the batch is freed. */
typedef struct wl_event {
    uint32_t kind;
    uint32_t code;
    uint64_t conn;
    const char *data;
    size_t len;
} wl_event;

/* Payload kinds for wl_publish. */
enum {
    WL_PAYLOAD_TEXT = 0,   /* UTF-8 text: goes out as a JSON string in the envelope           */
    WL_PAYLOAD_JSON = 1,   /* already-serialized JSON value: inlined in the envelope           */
    WL_PAYLOAD_BINARY = 2, /* bytes: binary hot-lane frame (see docs/protocol.md)              */
};

/* The library's version, e.g. "0.1.0" (a returned string: see above). */
int64_t wl_version(char **out, char *err, size_t err_len);

/* Every setting wl_server_new accepts, as a JSON array in documentation order (a returned string).
 * Each entry: {"key", "type": "bool"|"int"|"seconds"|"rate"|"string"|"string_list"|"choice",
 * "default" (null: unset), "nullable" (null is a value of its own, e.g. "off"), "min"/"max"
 * (inclusive bounds of int, seconds and rate; for seconds a min of 0 is exclusive unless
 * "zero_allowed"), "choices" (for choice), "doc" (one line)}. */
int64_t wl_config_schema(char **out, char *err, size_t err_len);

/* Create a server from a JSON object of settings (the keys of wl_config_schema).
 * Returns NULL and fills err on a bad key or value. Nothing is bound until wl_server_start. */
wl_server *wl_server_new(const char *config_json, size_t config_len, char *err, size_t err_len);

/* Serve `body` at GET `path` (plain HTTP on the same port). Call before wl_server_start.
 * Returns 0, or -1 with err filled (a path not starting with '/', text that is not UTF-8). */
int wl_server_add_route(wl_server *s, const char *path, size_t path_len, const char *content_type,
                        size_t ct_len, const char *body, size_t body_len, char *err, size_t err_len);

/* Bind and start the event loops. Returns 0 on success, -1 with err filled (e.g. the port is in
 * use). Returns at once; native threads serve. A stopped server can be started again. */
int wl_server_start(wl_server *s, char *err, size_t err_len);

/* The port actually bound (useful with port 0), or 0 when not running. */
int wl_server_port(const wl_server *s);

/* Close every connection with 1001, stop accepting, join the native threads. Waits at most
 * timeout_ms for close handshakes. Idempotent. Wakes any thread blocked in wl_drain. */
void wl_server_stop(wl_server *s, int timeout_ms);

/* Graceful stop: new upgrades get HTTP 503, each connection is closed with 1001 after its queued
 * messages went out, then (after at most timeout_ms, or when all are gone) wl_server_stop. */
void wl_server_drain_and_stop(wl_server *s, int timeout_ms);

/* Stop if needed and free. `s` must not be used afterwards. */
void wl_server_free(wl_server *s);

/* Take up to max_events inbound events, waiting at most timeout_ms (0: don't wait) for the first.
 * On return *events points to an array of the returned count and *batch to a handle that must be
 * passed to wl_batch_free (both NULL when the count is 0). Returns -1 if the server is not
 * running and its queue is empty. Blocks without any lock the caller could need. */
int wl_drain(wl_server *s, int max_events, int timeout_ms, const wl_event **events, void **batch);
void wl_batch_free(void *batch);

/* Wake a thread blocked in wl_drain (it returns 0 events). */
void wl_wake(wl_server *s);

/* A descriptor that is readable while events wait in the inbound queue (and after wl_wake or a
 * stop), for event loops (select/poll/epoll, asyncio's add_reader): an eventfd on Linux, a pipe's
 * read end elsewhere. wl_drain clears it when it leaves the queue empty; it is signalled only when
 * the queue goes from empty to non-empty, so a busy queue costs no system call per event. Never
 * read or close it. Created on the first call, valid until wl_server_free; -1 with err filled on
 * failure. */
int wl_event_fd(wl_server *s, char *err, size_t err_len);

/* Number of events waiting in the inbound queue. */
int64_t wl_pending(const wl_server *s);

/* Publish to every subscriber of `topic` (exact and glob subscriptions). The frame is encoded
 * once. `priority` is a WL_PRIORITY_*; `key` (may be NULL/0) is a coalescing key: a queued message
 * with the same key for the same connection is replaced (latest state wins). Returns the topic
 * offset given to this publication (>= 1), or -1 with err filled. */
int64_t wl_publish(wl_server *s, const char *topic, size_t topic_len, const char *data, size_t len,
                   int payload_kind, int priority, const char *key, size_t key_len, char *err,
                   size_t err_len);

/* Send one frame to one connection, exactly as given (binary != 0: binary frame, else text).
 * Returns 1 if the connection is open and the frame was queued, 0 if it is unknown or closed,
 * -1 on bad input (text that is not UTF-8) with err filled. */
int wl_send(wl_server *s, uint64_t conn, const char *data, size_t len, int binary, int priority,
            const char *key, size_t key_len, char *err, size_t err_len);

/* Multi-instance mode: send one frame to connection `conn` of instance `node` (its id, as in
 * presence members and wl_node); this instance's own id means wl_send. Returns 1 when it was handed
 * to Redis (or, for this instance, queued), 0 when it could not be (Redis unavailable, or the
 * connection is unknown here), -1 on bad input or without redis_url, with err filled. */
int wl_send_node(wl_server *s, const char *node, size_t node_len, uint64_t conn, const char *data, size_t len,
                 int binary, int priority, const char *key, size_t key_len, char *err, size_t err_len);

/* Send one frame to every connection of `user`. Returns the number of connections it was queued
 * for (0 if the user has none), or -1 on bad input with err filled. */
int64_t wl_send_user(wl_server *s, const char *user, size_t user_len, const char *data, size_t len,
                     int binary, int priority, const char *key, size_t key_len, char *err,
                     size_t err_len);

/* Close every connection of `user` with `code` (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999)
 * and `reason` (at most 123 bytes): on this instance and, with redis_url, on every other one.
 * Returns the number of this instance's connections being closed, or -1 with err filled. */
int64_t wl_disconnect_user(wl_server *s, const char *user, size_t user_len, int code, const char *reason,
                           size_t reason_len, char *err, size_t err_len);

/* Subscribe / unsubscribe a connection server-side. `topics_json` is a JSON array of strings
 * (glob patterns allowed). `ack_id_json` (may be NULL/0) is a JSON value: when given, the client
 * gets a {"type":"subscribed"|"unsubscribed","topics":[..],"id":..} reply carrying it — this is how
 * a subscription request that needed approval is answered. Returns 1 if the connection is open,
 * 0 if unknown, -1 with err filled on bad topics. */
int wl_subscribe(wl_server *s, uint64_t conn, const char *topics_json, size_t topics_len,
                 const char *ack_id_json, size_t ack_len, char *err, size_t err_len);
int wl_unsubscribe(wl_server *s, uint64_t conn, const char *topics_json, size_t topics_len,
                   const char *ack_id_json, size_t ack_len, char *err, size_t err_len);

/* Refuse a subscription request: the client gets {"type":"error","code":code,"message":..,"id":..}.
 * code NULL/0 means "forbidden" and message NULL/0 "subscription denied" (the defaults).
 * Returns 1 if the connection is open, 0 if unknown, -1 with err filled on bad input (text that is
 * not UTF-8, an id that is not JSON). */
int wl_deny(wl_server *s, uint64_t conn, const char *code, size_t code_len, const char *message,
            size_t msg_len, const char *ack_id_json, size_t ack_len, char *err, size_t err_len);

/* Close one connection with a close code (1000, 1001, 1003, 1007-1009, 1011-1013, 3000-4999) and
 * reason (at most 123 bytes). Returns 1 if the connection was open, 0 if unknown, -1 with err
 * filled on a bad code or reason. */
int wl_close(wl_server *s, uint64_t conn, int code, const char *reason, size_t reason_len, char *err,
             size_t err_len);

/* Engine log records (swift-log) waiting to be taken. */
int64_t wl_log_pending(const wl_server *s);

/* Takes waiting log records as JSON lines ({"level","time","message","metadata"}\n each), whole
 * records up to max_bytes in all (at least one if any is waiting, however long), as a returned
 * string; length 0 when none is waiting. */
int64_t wl_logs(wl_server *s, size_t max_bytes, char **out, char *err, size_t err_len);

/* Counters as a JSON object (a returned string). */
int64_t wl_stats(const wl_server *s, char **out, char *err, size_t err_len);

/* Multi-instance mode with presence: the members of `topic` on every instance as a JSON array of
 * {"user","conn","node","info"} objects (a returned string). Blocks for one Redis round trip, at
 * most timeout_ms. Fails (-1, err filled) when presence is off, Redis is unavailable, on timeout
 * or a bad topic. */
int64_t wl_presence(wl_server *s, const char *topic, size_t topic_len, int timeout_ms, char **out, char *err,
                    size_t err_len);

/* Frees a string returned by the library (NULL: nothing). */
void wl_free(void *p);

/* This instance's id as it appears in presence members ("node"), as a returned string; empty
 * while the server is not running. */
int64_t wl_node(const wl_server *s, char **out, char *err, size_t err_len);

/* Set the "info" (a JSON value, at most 4096 bytes) shown for a connection in presence. Returns 1
 * if the connection is open, 0 if unknown, -1 with err filled on bad JSON. */
int wl_set_presence_info(wl_server *s, uint64_t conn, const char *info_json, size_t len, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* WAVELANE_H */

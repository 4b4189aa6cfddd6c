/*
 * _native.h — what the translation units of wavelane._native share: the engine object, argument
 * views, the GIL/busy macros and the functions each file defines for the others.
 *
 *   _native.c           the module, the Engine type, its lifecycle and drain
 *   _native_convert.c   Python objects <-> (pointer, length) views; event batches -> Python tuples;
 *                       errors and returned strings (wavelane.h's one pattern)
 *   _native_outbound.c  Engine methods that act: publish, send, subscribe, deny, close, stats, logs...
 */
#ifndef WAVELANE_NATIVE_H
#define WAVELANE_NATIVE_H

#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "wavelane.h"

#define ERR_LEN 1024
#define DRAIN_SLICE_MS 100

/* ------------------------------------------------------------------------------------------ */
/* Module state (single-phase init: one interpreter, process-wide globals; defined in _native.c). */

extern PyObject *json_loads;
extern PyObject *str_connect;
extern PyObject *str_message;
extern PyObject *str_disconnect;
extern PyObject *str_subscribe_request;
extern PyObject *str_dropped;
extern PyObject *str_cluster;
extern PyObject *str_refresh;
extern PyObject *str_rpc;

typedef struct {
    PyObject_HEAD
    wl_server *srv;
    int busy;          /* threads inside the engine with the GIL released (guarded by the GIL) */
    uint64_t wake_seq; /* bumped by wake(): a waiting drain() returns early */
} EngineObject;

/* A borrowed view of a str (as UTF-8) or bytes-like argument; `owner` keeps the memory alive. */
typedef struct {
    const char *ptr;
    Py_ssize_t len;
    PyObject *owner;
} View;

#define ENGINE_CHECK(self)                                                                     \
    do {                                                                                       \
        if (check_open(self) < 0)                                                              \
            return NULL;                                                                       \
    } while (0)

/* Enter/leave the engine without the GIL; `busy` protects the server from being freed. */
#define BEGIN_NATIVE(self)                                                                     \
    (self)->busy++;                                                                            \
    Py_BEGIN_ALLOW_THREADS
#define END_NATIVE(self)                                                                       \
    Py_END_ALLOW_THREADS                                                                       \
    (self)->busy--;

/* _native_convert.c */
double monotonic_now(void);
void view_release(View *v);
void type_error(const char *argname, const char *expected, PyObject *obj);
int view_str(PyObject *obj, View *v, const char *argname);
int view_opt_str(PyObject *obj, View *v, const char *argname);
int view_bytes(PyObject *obj, View *v, const char *argname);
int view_payload(PyObject *obj, View *v, int *binary, const char *argname);
int get_conn(PyObject *obj, uint64_t *out);
PyObject *raise_err(PyObject *exc, const char *err, const char *fallback);
int check_open(EngineObject *self);
PyObject *decode_text(const char *data, size_t len, int parse_json);
PyObject *decode_json(const char *data, size_t len);
PyObject *build_events(const wl_event *evs, int n, int parse_json);
int view_key(PyObject *key, View *v);
PyObject *take_string(int64_t n, char *out, const char *err, int as_json);

/* _native_outbound.c */
PyObject *Engine_publish(EngineObject *self, PyObject *args);
PyObject *Engine_send(EngineObject *self, PyObject *args);
PyObject *Engine_send_user(EngineObject *self, PyObject *args);
PyObject *Engine_disconnect_user(EngineObject *self, PyObject *args);
PyObject *Engine_subscribe(EngineObject *self, PyObject *args);
PyObject *Engine_unsubscribe(EngineObject *self, PyObject *args);
PyObject *Engine_deny(EngineObject *self, PyObject *args);
PyObject *Engine_close(EngineObject *self, PyObject *args);
PyObject *Engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored));
PyObject *Engine_presence(EngineObject *self, PyObject *args);
PyObject *Engine_node(EngineObject *self, PyObject *Py_UNUSED(ignored));
PyObject *Engine_set_presence_info(EngineObject *self, PyObject *args);
PyObject *Engine_log_pending(EngineObject *self, PyObject *Py_UNUSED(ignored));
PyObject *Engine_logs(EngineObject *self, PyObject *Py_UNUSED(ignored));

#endif /* WAVELANE_NATIVE_H */

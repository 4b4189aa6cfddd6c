/*
 * wavelane._native — CPython binding of the Wavelane C ABI (include/wavelane.h).
 *
 * Built against the stable ABI (abi3, CPython >= 3.9): only limited-API calls are used, so one
 * binary serves every CPython from 3.9 on. The module links libwavelane.so, which sits next to it
 * (rpath $ORIGIN).
 *
 * Threading: the engine never calls back into Python. Calls that may block (drain, start, stop,
 * publish, send_user, freeing) release the GIL; `busy` counts the threads that are inside the
 * engine without the GIL so that close_engine() never frees the server under their feet.
 */
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
/* Module state (single-phase init: one interpreter, process-wide globals).                    */

static PyObject *json_loads = NULL; /* json.loads, fetched once */
static PyObject *str_connect = NULL;
static PyObject *str_message = NULL;
static PyObject *str_disconnect = NULL;
static PyObject *str_subscribe_request = NULL;
static PyObject *str_dropped = NULL;
static PyObject *str_cluster = NULL;
static PyObject *str_refresh = NULL;
static PyObject *str_rpc = NULL;
static PyObject *EngineType = NULL;

typedef struct {
    PyObject_HEAD
    wl_server *srv;
    int busy;          /* threads inside the engine with the GIL released (guarded by the GIL) */
    uint64_t wake_seq; /* bumped by wake(): a waiting drain() returns early */
} EngineObject;

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */

static double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A borrowed view of a str (as UTF-8) or bytes-like argument; `owner` keeps the memory alive. */
typedef struct {
    const char *ptr;
    Py_ssize_t len;
    PyObject *owner;
} View;

static void view_release(View *v) {
    Py_CLEAR(v->owner);
    v->ptr = NULL;
    v->len = 0;
}

/* TypeError "<arg> must be <expected>, not <type name>" (tp_name is not in the limited API). */
static void type_error(const char *argname, const char *expected, PyObject *obj) {
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__name__");
    if (name == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be %s", argname, expected);
        return;
    }
    PyErr_Format(PyExc_TypeError, "%s must be %s, not %U", argname, expected, name);
    Py_DECREF(name);
}

/* UTF-8 of a str. The limited API has PyUnicode_AsUTF8AndSize only from 3.10, so go through a
 * bytes object (one copy) to keep the 3.9 abi3 build valid. */
static int view_str(PyObject *obj, View *v, const char *argname) {
    v->owner = NULL;
    if (!PyUnicode_Check(obj)) {
        type_error(argname, "str", obj);
        return -1;
    }
#if Py_LIMITED_API + 0 >= 0x030A0000
    v->ptr = PyUnicode_AsUTF8AndSize(obj, &v->len);
    return v->ptr ? 0 : -1;
#else
    PyObject *b = PyUnicode_AsUTF8String(obj);
    if (b == NULL)
        return -1;
    char *p;
    if (PyBytes_AsStringAndSize(b, &p, &v->len) < 0) {
        Py_DECREF(b);
        return -1;
    }
    v->ptr = p;
    v->owner = b;
    return 0;
#endif
}

/* Optional str: None gives a NULL view. */
static int view_opt_str(PyObject *obj, View *v, const char *argname) {
    v->owner = NULL;
    v->ptr = NULL;
    v->len = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    return view_str(obj, v, argname);
}

/* bytes or bytearray. bytearray is copied (it is mutable and the GIL may be released). */
static int view_bytes(PyObject *obj, View *v, const char *argname) {
    v->owner = NULL;
    if (PyBytes_Check(obj)) {
        char *p;
        if (PyBytes_AsStringAndSize(obj, &p, &v->len) < 0)
            return -1;
        v->ptr = p;
        Py_INCREF(obj);
        v->owner = obj;
        return 0;
    }
    if (PyByteArray_Check(obj)) {
        PyObject *b = PyBytes_FromStringAndSize(PyByteArray_AsString(obj), PyByteArray_Size(obj));
        if (b == NULL)
            return -1;
        int rc = view_bytes(b, v, argname);
        Py_DECREF(b);
        return rc;
    }
    type_error(argname, "str or bytes", obj);
    return -1;
}

/* str -> (utf8, binary=0); bytes/bytearray -> (bytes, binary=1). */
static int view_payload(PyObject *obj, View *v, int *binary, const char *argname) {
    if (PyUnicode_Check(obj)) {
        *binary = 0;
        return view_str(obj, v, argname);
    }
    *binary = 1;
    return view_bytes(obj, v, argname);
}

static int get_conn(PyObject *obj, uint64_t *out) {
    if (!PyLong_Check(obj)) {
        type_error("conn", "int", obj);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "conn must be a non-negative 64-bit int");
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static PyObject *raise_err(PyObject *exc, const char *err, const char *fallback) {
    PyErr_SetString(exc, (err && err[0]) ? err : fallback);
    return NULL;
}

static int check_open(EngineObject *self) {
    if (self->srv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "engine is closed");
        return -1;
    }
    return 0;
}

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

/* ------------------------------------------------------------------------------------------ */
/* Engine type                                                                                 */

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"config_json", NULL};
    PyObject *cfg;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U:Engine", kwlist, &cfg))
        return NULL;
    View v;
    if (view_str(cfg, &v, "config_json") < 0)
        return NULL;
    char err[ERR_LEN];
    err[0] = '\0';
    wl_server *srv = wl_server_new(v.ptr, (size_t)v.len, err, sizeof err);
    view_release(&v);
    if (srv == NULL)
        return raise_err(PyExc_ValueError, err, "invalid configuration");

    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    EngineObject *self = (EngineObject *)alloc(type, 0);
    if (self == NULL) {
        wl_server_free(srv);
        return NULL;
    }
    self->srv = srv;
    self->busy = 0;
    self->wake_seq = 0;
    return (PyObject *)self;
}

/* Free the native server once nobody is inside it (GIL held on entry and exit). */
static void engine_free_server(EngineObject *self) {
    wl_server *srv = self->srv;
    if (srv == NULL)
        return;
    if (self->busy > 0) {
        /* Threads blocked in the engine (drain): stop the server, which wakes them, and wait. */
        Py_BEGIN_ALLOW_THREADS
        wl_server_stop(srv, 0);
        Py_END_ALLOW_THREADS
        while (self->busy > 0) {
            Py_BEGIN_ALLOW_THREADS
            wl_wake(srv);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            Py_END_ALLOW_THREADS
        }
    }
    self->srv = NULL;
    Py_BEGIN_ALLOW_THREADS
    wl_server_free(srv);
    Py_END_ALLOW_THREADS
}

static void Engine_dealloc(PyObject *op) {
    EngineObject *self = (EngineObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->srv != NULL) {
        wl_server *srv = self->srv;
        self->srv = NULL;
        /* Nobody can be inside the engine: every such call holds a reference to self. */
        Py_BEGIN_ALLOW_THREADS
        wl_server_free(srv);
        Py_END_ALLOW_THREADS
    }
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

static PyObject *Engine_add_route(EngineObject *self, PyObject *args) {
    PyObject *path, *ctype, *body;
    if (!PyArg_ParseTuple(args, "OOO:add_route", &path, &ctype, &body))
        return NULL;
    ENGINE_CHECK(self);
    View vp = {0}, vc = {0}, vb = {0};
    PyObject *result = NULL;
    if (view_str(path, &vp, "path") < 0 || view_str(ctype, &vc, "content_type") < 0)
        goto done;
    if (PyUnicode_Check(body)) {
        if (view_str(body, &vb, "body") < 0)
            goto done;
    } else if (view_bytes(body, &vb, "body") < 0) {
        goto done;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    if (wl_server_add_route(self->srv, vp.ptr, (size_t)vp.len, vc.ptr, (size_t)vc.len, vb.ptr,
                            (size_t)vb.len, err, sizeof err) != 0) {
        raise_err(PyExc_ValueError, err, "add_route failed");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    view_release(&vp);
    view_release(&vc);
    view_release(&vb);
    return result;
}

static PyObject *Engine_start(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    int rc;
    BEGIN_NATIVE(self)
    rc = wl_server_start(self->srv, err, sizeof err);
    END_NATIVE(self)
    if (rc != 0)
        return raise_err(PyExc_OSError, err, "cannot start the server");
    Py_RETURN_NONE;
}

static PyObject *Engine_stop(EngineObject *self, PyObject *args) {
    double timeout = 5.0;
    if (!PyArg_ParseTuple(args, "|d:stop", &timeout))
        return NULL;
    if (self->srv == NULL)
        Py_RETURN_NONE; /* idempotent */
    if (timeout < 0)
        timeout = 0;
    if (timeout > 3600)
        timeout = 3600;
    int ms = (int)(timeout * 1000.0);
    BEGIN_NATIVE(self)
    wl_server_stop(self->srv, ms);
    END_NATIVE(self)
    Py_RETURN_NONE;
}

static PyObject *Engine_drain_and_stop(EngineObject *self, PyObject *args) {
    double timeout = 5.0;
    if (!PyArg_ParseTuple(args, "|d:drain_and_stop", &timeout))
        return NULL;
    if (self->srv == NULL)
        Py_RETURN_NONE;
    if (!(timeout >= 0))
        timeout = 0;
    if (timeout > 3600)
        timeout = 3600;
    int ms = (int)(timeout * 1000.0);
    BEGIN_NATIVE(self)
    wl_server_drain_and_stop(self->srv, ms);
    END_NATIVE(self)
    Py_RETURN_NONE;
}

static PyObject *Engine_close_engine(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    engine_free_server(self);
    Py_RETURN_NONE;
}

static PyObject *Engine_get_port(EngineObject *self, void *Py_UNUSED(closure)) {
    if (self->srv == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromLong(wl_server_port(self->srv));
}

static PyObject *Engine_get_closed(EngineObject *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->srv == NULL);
}

/* Text payload -> str, or (parse_json and it looks like an object/array) the parsed value. A client
 * controls this text: whatever json.loads raises for it (ValueError, RecursionError for deep nesting,
 * MemoryError...) gives the str instead, so one message never costs the rest of the batch. */
static PyObject *decode_text(const char *data, size_t len, int parse_json) {
    PyObject *s = PyUnicode_DecodeUTF8(data ? data : "", (Py_ssize_t)len, "strict");
    if (s == NULL || !parse_json || len == 0 || (data[0] != '{' && data[0] != '['))
        return s;
    PyObject *parsed = PyObject_CallFunctionObjArgs(json_loads, s, NULL);
    if (parsed != NULL) {
        Py_DECREF(s);
        return parsed;
    }
    PyErr_Clear();
    return s;
}

/* Engine-made JSON (connect, subscribe_request...) -> its value; should it not decode (it embeds
 * client-chosen strings and claims), the JSON text itself, so the batch is never lost. */
static PyObject *decode_json(const char *data, size_t len) {
    PyObject *s = PyUnicode_DecodeUTF8(data ? data : "", (Py_ssize_t)len, "strict");
    if (s == NULL)
        return NULL;
    PyObject *v = PyObject_CallFunctionObjArgs(json_loads, s, NULL);
    if (v != NULL) {
        Py_DECREF(s);
        return v;
    }
    PyErr_Clear();
    return s;
}

/* One batch -> list of (kind, conn, data). Unknown kinds (newer engines) are skipped. */
static PyObject *build_events(const wl_event *evs, int n, int parse_json) {
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        const wl_event *e = &evs[i];
        PyObject *kind, *data;
        switch (e->kind) {
        case WL_EV_CONNECT:
            kind = str_connect;
            data = decode_json(e->data, e->len);
            break;
        case WL_EV_TEXT:
            kind = str_message;
            data = decode_text(e->data, e->len, parse_json);
            break;
        case WL_EV_BINARY:
            kind = str_message;
            data = PyBytes_FromStringAndSize(e->data ? e->data : "", (Py_ssize_t)e->len);
            break;
        case WL_EV_DISCONNECT:
            kind = str_disconnect;
            data = PyLong_FromUnsignedLong((unsigned long)e->code);
            break;
        case WL_EV_SUBSCRIBE_REQUEST:
            kind = str_subscribe_request;
            data = decode_json(e->data, e->len);
            break;
        case WL_EV_DROPPED:
            kind = str_dropped;
            data = decode_json(e->data, e->len);
            break;
        case WL_EV_CLUSTER:
            kind = str_cluster;
            data = decode_json(e->data, e->len);
            break;
        case WL_EV_RPC:
            kind = str_rpc;
            data = decode_json(e->data, e->len);
            break;
        case WL_EV_REFRESH:
            kind = str_refresh;
            data = decode_json(e->data, e->len);
            break;
        default:
            continue;
        }
        if (data == NULL) { /* out of memory for this payload alone: keep the event, and the batch */
            PyErr_Clear();
            Py_INCREF(Py_None);
            data = Py_None;
        }
        PyObject *conn = PyLong_FromUnsignedLongLong((unsigned long long)e->conn);
        if (conn == NULL) {
            Py_DECREF(data);
            goto fail;
        }
        PyObject *tup = PyTuple_New(3);
        if (tup == NULL) {
            Py_DECREF(conn);
            Py_DECREF(data);
            goto fail;
        }
        Py_INCREF(kind);
        PyTuple_SetItem(tup, 0, kind); /* steals */
        PyTuple_SetItem(tup, 1, conn);
        PyTuple_SetItem(tup, 2, data);
        int rc = PyList_Append(list, tup);
        Py_DECREF(tup);
        if (rc < 0)
            goto fail;
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyObject *Engine_drain(EngineObject *self, PyObject *args) {
    int max_events = 1024;
    double timeout = 0.0;
    int parse_json = 0;
    if (!PyArg_ParseTuple(args, "|idp:drain", &max_events, &timeout, &parse_json))
        return NULL;
    ENGINE_CHECK(self);
    if (max_events <= 0) {
        PyErr_SetString(PyExc_ValueError, "max_events must be > 0");
        return NULL;
    }
    if (!(timeout >= 0.0)) /* also rejects NaN */
        timeout = 0.0;
    const double deadline = monotonic_now() + timeout;
    const uint64_t wake_seq = self->wake_seq;

    for (;;) {
        double remaining = deadline - monotonic_now();
        int slice_ms = 0;
        if (remaining > 0) {
            slice_ms = remaining * 1000.0 >= DRAIN_SLICE_MS ? DRAIN_SLICE_MS
                                                            : (int)(remaining * 1000.0 + 0.999);
        }
        const wl_event *evs = NULL;
        void *batch = NULL;
        int n;
        BEGIN_NATIVE(self)
        n = wl_drain(self->srv, max_events, slice_ms, &evs, &batch);
        END_NATIVE(self)

        if (n > 0) {
            PyObject *list = build_events(evs, n, parse_json);
            wl_batch_free(batch);
            return list;
        }
        if (batch != NULL)
            wl_batch_free(batch);
        if (n < 0 || self->srv == NULL)
            return PyList_New(0); /* not running and nothing queued */
        if (PyErr_CheckSignals() < 0)
            return NULL;
        if (self->wake_seq != wake_seq || monotonic_now() >= deadline)
            return PyList_New(0);
    }
}

static PyObject *Engine_wake(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    self->wake_seq++;
    if (self->srv != NULL)
        wl_wake(self->srv);
    Py_RETURN_NONE;
}

static PyObject *Engine_fileno(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    const int fd = wl_event_fd(self->srv, err, sizeof err);
    if (fd < 0)
        return raise_err(PyExc_OSError, err, "no event descriptor");
    return PyLong_FromLong(fd);
}

static PyObject *Engine_pending(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    return PyLong_FromLongLong((long long)wl_pending(self->srv));
}

/* Optional coalescing key: None or a str. */
static int view_key(PyObject *key, View *v) {
    v->ptr = NULL;
    v->len = 0;
    v->owner = NULL;
    if (key == NULL || key == Py_None)
        return 0;
    return view_str(key, v, "key");
}

static PyObject *Engine_publish(EngineObject *self, PyObject *args) {
    PyObject *topic, *data, *key = Py_None;
    int kind, priority = WL_PRIORITY_NORMAL;
    if (!PyArg_ParseTuple(args, "OOi|iO:publish", &topic, &data, &kind, &priority, &key))
        return NULL;
    ENGINE_CHECK(self);
    if (kind != WL_PAYLOAD_TEXT && kind != WL_PAYLOAD_JSON && kind != WL_PAYLOAD_BINARY) {
        PyErr_SetString(PyExc_ValueError, "kind must be PAYLOAD_TEXT, PAYLOAD_JSON or PAYLOAD_BINARY");
        return NULL;
    }
    View vt, vd;
    if (view_str(topic, &vt, "topic") < 0)
        return NULL;
    int binary;
    if (view_payload(data, &vd, &binary, "data") < 0) {
        view_release(&vt);
        return NULL;
    }
    View vk;
    if (view_key(key, &vk) < 0) {
        view_release(&vt);
        view_release(&vd);
        return NULL;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    int64_t off;
    BEGIN_NATIVE(self)
    off = wl_publish(self->srv, vt.ptr, (size_t)vt.len, vd.ptr, (size_t)vd.len, kind, priority,
                     vk.ptr, (size_t)vk.len, err, sizeof err);
    END_NATIVE(self)
    view_release(&vt);
    view_release(&vd);
    view_release(&vk);
    if (off < 0)
        return raise_err(PyExc_ValueError, err, "publish failed");
    return PyLong_FromLongLong((long long)off);
}

static PyObject *Engine_send(EngineObject *self, PyObject *args) {
    PyObject *conn_obj, *data, *key = Py_None, *node = Py_None;
    int priority = WL_PRIORITY_NORMAL;
    if (!PyArg_ParseTuple(args, "OO|iOO:send", &conn_obj, &data, &priority, &key, &node))
        return NULL;
    ENGINE_CHECK(self);
    uint64_t conn;
    if (get_conn(conn_obj, &conn) < 0)
        return NULL;
    View vd, vk, vn;
    vn.owner = NULL;
    vn.ptr = NULL;
    vn.len = 0;
    if (node != Py_None && view_str(node, &vn, "node") < 0)
        return NULL;
    int binary;
    if (view_payload(data, &vd, &binary, "data") < 0) {
        view_release(&vn);
        return NULL;
    }
    if (view_key(key, &vk) < 0) {
        view_release(&vd);
        view_release(&vn);
        return NULL;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    int rc;
    if (node == Py_None) {
        rc = wl_send(self->srv, conn, vd.ptr, (size_t)vd.len, binary, priority, vk.ptr, (size_t)vk.len, err,
                     sizeof err);
    } else {
        /* May wait (GIL released) while Redis is behind. */
        BEGIN_NATIVE(self)
        rc = wl_send_node(self->srv, vn.ptr, (size_t)vn.len, conn, vd.ptr, (size_t)vd.len, binary, priority, vk.ptr,
                          (size_t)vk.len, err, sizeof err);
        END_NATIVE(self)
    }
    view_release(&vd);
    view_release(&vk);
    view_release(&vn);
    if (rc < 0)
        return raise_err(PyExc_ValueError, err, "send failed");
    return PyBool_FromLong(rc == 1);
}

static PyObject *Engine_send_user(EngineObject *self, PyObject *args) {
    PyObject *user, *data, *key = Py_None;
    int priority = WL_PRIORITY_NORMAL;
    if (!PyArg_ParseTuple(args, "OO|iO:send_user", &user, &data, &priority, &key))
        return NULL;
    ENGINE_CHECK(self);
    View vu, vd, vk;
    if (view_str(user, &vu, "user") < 0)
        return NULL;
    int binary;
    if (view_payload(data, &vd, &binary, "data") < 0) {
        view_release(&vu);
        return NULL;
    }
    if (view_key(key, &vk) < 0) {
        view_release(&vu);
        view_release(&vd);
        return NULL;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    int64_t n;
    BEGIN_NATIVE(self)
    n = wl_send_user(self->srv, vu.ptr, (size_t)vu.len, vd.ptr, (size_t)vd.len, binary, priority,
                     vk.ptr, (size_t)vk.len, err, sizeof err);
    END_NATIVE(self)
    view_release(&vu);
    view_release(&vd);
    view_release(&vk);
    if (n < 0)
        return raise_err(PyExc_ValueError, err, "send_user failed");
    return PyLong_FromLongLong((long long)n);
}

static PyObject *Engine_disconnect_user(EngineObject *self, PyObject *args) {
    PyObject *user, *reason;
    int code;
    if (!PyArg_ParseTuple(args, "OiO:disconnect_user", &user, &code, &reason))
        return NULL;
    ENGINE_CHECK(self);
    View vu, vr;
    if (view_str(user, &vu, "user") < 0)
        return NULL;
    if (view_str(reason, &vr, "reason") < 0) {
        view_release(&vu);
        return NULL;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    int64_t n;
    BEGIN_NATIVE(self)
    n = wl_disconnect_user(self->srv, vu.ptr, (size_t)vu.len, code, vr.ptr, (size_t)vr.len, err, sizeof err);
    END_NATIVE(self)
    view_release(&vu);
    view_release(&vr);
    if (n < 0)
        return raise_err(PyExc_ValueError, err, "disconnect_user failed");
    return PyLong_FromLongLong((long long)n);
}

typedef int (*sub_fn)(wl_server *, uint64_t, const char *, size_t, const char *, size_t, char *,
                      size_t);

static PyObject *subscribe_common(EngineObject *self, PyObject *args, sub_fn fn,
                                  const char *fmt) {
    PyObject *conn_obj, *topics, *ack = Py_None;
    if (!PyArg_ParseTuple(args, fmt, &conn_obj, &topics, &ack))
        return NULL;
    ENGINE_CHECK(self);
    uint64_t conn;
    if (get_conn(conn_obj, &conn) < 0)
        return NULL;
    View vt, va;
    if (view_str(topics, &vt, "topics_json") < 0)
        return NULL;
    if (view_opt_str(ack, &va, "ack_json") < 0) {
        view_release(&vt);
        return NULL;
    }
    char err[ERR_LEN];
    err[0] = '\0';
    int rc = fn(self->srv, conn, vt.ptr, (size_t)vt.len, va.ptr, (size_t)va.len, err, sizeof err);
    view_release(&vt);
    view_release(&va);
    if (rc < 0)
        return raise_err(PyExc_ValueError, err, "invalid topics");
    return PyBool_FromLong(rc == 1);
}

static PyObject *Engine_subscribe(EngineObject *self, PyObject *args) {
    return subscribe_common(self, args, wl_subscribe, "OO|O:subscribe");
}

static PyObject *Engine_unsubscribe(EngineObject *self, PyObject *args) {
    return subscribe_common(self, args, wl_unsubscribe, "OO|O:unsubscribe");
}

static PyObject *Engine_deny(EngineObject *self, PyObject *args) {
    PyObject *conn_obj, *code, *message, *ack = Py_None;
    if (!PyArg_ParseTuple(args, "OOO|O:deny", &conn_obj, &code, &message, &ack))
        return NULL;
    ENGINE_CHECK(self);
    uint64_t conn;
    if (get_conn(conn_obj, &conn) < 0)
        return NULL;
    View vc = {0}, vm = {0}, va = {0};
    PyObject *result = NULL;
    /* None: the engine's default code / message. */
    if (view_opt_str(code, &vc, "code") < 0 || view_opt_str(message, &vm, "message") < 0 ||
        view_opt_str(ack, &va, "ack_json") < 0)
        goto done;
    char err[ERR_LEN];
    err[0] = '\0';
    int rc = wl_deny(self->srv, conn, vc.ptr, (size_t)vc.len, vm.ptr, (size_t)vm.len, va.ptr,
                     (size_t)va.len, err, sizeof err);
    if (rc < 0) {
        raise_err(PyExc_ValueError, err, "deny failed");
        goto done;
    }
    result = PyBool_FromLong(rc == 1);
done:
    view_release(&vc);
    view_release(&vm);
    view_release(&va);
    return result;
}

static PyObject *Engine_close(EngineObject *self, PyObject *args) {
    PyObject *conn_obj, *reason;
    int code;
    if (!PyArg_ParseTuple(args, "OiO:close", &conn_obj, &code, &reason))
        return NULL;
    ENGINE_CHECK(self);
    uint64_t conn;
    if (get_conn(conn_obj, &conn) < 0)
        return NULL;
    View vr;
    if (view_str(reason, &vr, "reason") < 0)
        return NULL;
    char err[ERR_LEN];
    err[0] = '\0';
    int rc = wl_close(self->srv, conn, code, vr.ptr, (size_t)vr.len, err, sizeof err);
    view_release(&vr);
    if (rc < 0)
        return raise_err(PyExc_ValueError, err, "close failed");
    return PyBool_FromLong(rc == 1);
}

/* A string returned through the C ABI's one pattern (wavelane.h): *out malloc'd, freed here. */
static PyObject *take_string(int64_t n, char *out, const char *err, int as_json) {
    if (n < 0) {
        wl_free(out);
        return raise_err(PyExc_RuntimeError, err, "the engine returned no string");
    }
    PyObject *v = as_json ? decode_json(out, (size_t)n) : PyUnicode_DecodeUTF8(out, (Py_ssize_t)n, "replace");
    wl_free(out);
    return v;
}

static PyObject *Engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_stats(self->srv, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

static PyObject *Engine_presence(EngineObject *self, PyObject *args) {
    PyObject *topic;
    int timeout_ms = 2000;
    if (!PyArg_ParseTuple(args, "O|i:presence", &topic, &timeout_ms))
        return NULL;
    ENGINE_CHECK(self);
    View vt;
    if (view_str(topic, &vt, "topic") < 0)
        return NULL;
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n;
    BEGIN_NATIVE(self)
    n = wl_presence(self->srv, vt.ptr, (size_t)vt.len, timeout_ms, &out, err, sizeof err);
    END_NATIVE(self)
    view_release(&vt);
    return take_string(n, out, err, 1);
}

static PyObject *Engine_node(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_node(self->srv, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

static PyObject *Engine_set_presence_info(EngineObject *self, PyObject *args) {
    unsigned long long conn;
    PyObject *info;
    if (!PyArg_ParseTuple(args, "KO:set_presence_info", &conn, &info))
        return NULL;
    ENGINE_CHECK(self);
    View vi;
    if (view_str(info, &vi, "info") < 0)
        return NULL;
    char err[ERR_LEN];
    err[0] = '\0';
    int rc = wl_set_presence_info(self->srv, (uint64_t)conn, vi.ptr, (size_t)vi.len, err, sizeof err);
    view_release(&vi);
    if (rc < 0)
        return raise_err(PyExc_ValueError, err, "set_presence_info failed");
    return PyBool_FromLong(rc);
}

static PyObject *Engine_log_pending(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->srv == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromLongLong((long long)wl_log_pending(self->srv));
}

/* Takes the waiting engine log records: a str of JSON lines ("" when none), at most ~64 KiB
 * of them per call (at least one record). */
static PyObject *Engine_logs(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_logs(self->srv, 65536, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

static PyMethodDef Engine_methods[] = {
    {"log_pending", (PyCFunction)Engine_log_pending, METH_NOARGS,
     "log_pending()\n--\n\nEngine log records waiting to be taken."},
    {"logs", (PyCFunction)Engine_logs, METH_NOARGS,
     "logs()\n--\n\nTake waiting engine log records as JSON lines."},
    {"add_route", (PyCFunction)Engine_add_route, METH_VARARGS,
     "add_route(path, content_type, body)\n--\n\nServe body at GET path (before start())."},
    {"start", (PyCFunction)Engine_start, METH_NOARGS,
     "start()\n--\n\nBind and start serving; raises OSError with the engine's message."},
    {"stop", (PyCFunction)Engine_stop, METH_VARARGS,
     "stop(timeout=5.0)\n--\n\nClose clients with 1001 and stop; idempotent."},
    {"drain_and_stop", (PyCFunction)Engine_drain_and_stop, METH_VARARGS,
     "drain_and_stop(timeout=5.0)\n--\n\n503 for new upgrades, close each client with 1001 once its queue "
     "went out, then stop."},
    {"close_engine", (PyCFunction)Engine_close_engine, METH_NOARGS,
     "close_engine()\n--\n\nStop if needed and free the native server."},
    {"drain", (PyCFunction)Engine_drain, METH_VARARGS,
     "drain(max_events, timeout, parse_json)\n--\n\n"
     "Take up to max_events events, waiting at most timeout seconds for the first (GIL released)."},
    {"wake", (PyCFunction)Engine_wake, METH_NOARGS,
     "wake()\n--\n\nMake a thread waiting in drain() return an empty list."},
    {"fileno", (PyCFunction)Engine_fileno, METH_NOARGS,
     "fileno()\n--\n\nA descriptor readable while inbound events wait (cleared by drain()); never read or close it."},
    {"pending", (PyCFunction)Engine_pending, METH_NOARGS,
     "pending()\n--\n\nNumber of queued inbound events."},
    {"publish", (PyCFunction)Engine_publish, METH_VARARGS,
     "publish(topic, data, kind, priority=2, key=None)\n--\n\nPublish to a topic; returns the offset."},
    {"send", (PyCFunction)Engine_send, METH_VARARGS,
     "send(conn, data, priority=2, key=None)\n--\n\nstr -> text frame, bytes -> binary frame; False if conn is unknown."},
    {"send_user", (PyCFunction)Engine_send_user, METH_VARARGS,
     "send_user(user, data, priority=2, key=None)\n--\n\nSend to every connection of user; returns the count."},
    {"disconnect_user", (PyCFunction)Engine_disconnect_user, METH_VARARGS,
     "disconnect_user(user, code, reason)\n--\n\nClose every connection of user (every instance with redis_url); "
     "returns this instance's count."},
    {"subscribe", (PyCFunction)Engine_subscribe, METH_VARARGS,
     "subscribe(conn, topics_json, ack_json=None)\n--\n\nServer-side subscribe."},
    {"unsubscribe", (PyCFunction)Engine_unsubscribe, METH_VARARGS,
     "unsubscribe(conn, topics_json, ack_json=None)\n--\n\nServer-side unsubscribe."},
    {"deny", (PyCFunction)Engine_deny, METH_VARARGS,
     "deny(conn, code, message, ack_json=None)\n--\n\nRefuse a subscription request."},
    {"close", (PyCFunction)Engine_close, METH_VARARGS,
     "close(conn, code, reason)\n--\n\nClose one connection."},
    {"stats", (PyCFunction)Engine_stats, METH_NOARGS, "stats()\n--\n\nCounters as a JSON string."},
    {"presence", (PyCFunction)Engine_presence, METH_VARARGS,
     "presence(topic, timeout_ms=2000)\n--\n\nMembers of a topic on every instance (list of dicts)."},
    {"node", (PyCFunction)Engine_node, METH_NOARGS, "node()\n--\n\nThis instance's id in presence members."},
    {"set_presence_info", (PyCFunction)Engine_set_presence_info, METH_VARARGS,
     "set_presence_info(conn, info_json)\n--\n\nSet the info shown for a connection in presence."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"port", (getter)Engine_get_port, NULL, "The bound port, or 0 when not running.", NULL},
    {"closed", (getter)Engine_get_closed, NULL, "True once close_engine() ran.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Engine_slots[] = {
    {Py_tp_new, Engine_new},
    {Py_tp_dealloc, Engine_dealloc},
    {Py_tp_methods, Engine_methods},
    {Py_tp_getset, Engine_getset},
    {Py_tp_doc, "Engine(config_json)\n--\n\nOne native Wavelane server (see wavelane.h)."},
    {0, NULL},
};

static PyType_Spec Engine_spec = {
    .name = "wavelane._native.Engine",
    .basicsize = sizeof(EngineObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Engine_slots,
};

/* ------------------------------------------------------------------------------------------ */
/* Module                                                                                      */

static PyObject *mod_version(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_version(&out, err, sizeof err);
    return take_string(n, out, err, 0);
}

static PyObject *mod_config_schema(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored)) {
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_config_schema(&out, err, sizeof err);
    return take_string(n, out, err, 0);
}

static PyMethodDef module_methods[] = {
    {"version", mod_version, METH_NOARGS, "version()\n--\n\nVersion of libwavelane.so."},
    {"config_schema", mod_config_schema, METH_NOARGS,
     "config_schema()\n--\n\nThe engine's configuration schema as a JSON string (wl_config_schema)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "wavelane._native",
    "Low-level binding of libwavelane.so (use wavelane.Server instead).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    PyObject *json = PyImport_ImportModule("json");
    if (json == NULL)
        goto fail;
    json_loads = PyObject_GetAttrString(json, "loads");
    Py_DECREF(json);
    if (json_loads == NULL)
        goto fail;
    if (!(str_connect = PyUnicode_InternFromString("connect")) ||
        !(str_message = PyUnicode_InternFromString("message")) ||
        !(str_disconnect = PyUnicode_InternFromString("disconnect")) ||
        !(str_subscribe_request = PyUnicode_InternFromString("subscribe_request")) ||
        !(str_dropped = PyUnicode_InternFromString("dropped")) ||
        !(str_cluster = PyUnicode_InternFromString("cluster")) ||
        !(str_rpc = PyUnicode_InternFromString("rpc")) ||
        !(str_refresh = PyUnicode_InternFromString("refresh")))
        goto fail;
    EngineType = PyType_FromSpec(&Engine_spec);
    if (EngineType == NULL)
        goto fail;
    Py_INCREF(EngineType);
    if (PyModule_AddObject(m, "Engine", EngineType) < 0) {
        Py_DECREF(EngineType);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "ABI_VERSION", WL_ABI_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "PAYLOAD_TEXT", WL_PAYLOAD_TEXT) < 0 ||
        PyModule_AddIntConstant(m, "PAYLOAD_JSON", WL_PAYLOAD_JSON) < 0 ||
        PyModule_AddIntConstant(m, "PAYLOAD_BINARY", WL_PAYLOAD_BINARY) < 0 ||
        PyModule_AddIntConstant(m, "PRIORITY_CRITICAL", WL_PRIORITY_CRITICAL) < 0 ||
        PyModule_AddIntConstant(m, "PRIORITY_HIGH", WL_PRIORITY_HIGH) < 0 ||
        PyModule_AddIntConstant(m, "PRIORITY_NORMAL", WL_PRIORITY_NORMAL) < 0 ||
        PyModule_AddIntConstant(m, "PRIORITY_LOW", WL_PRIORITY_LOW) < 0 ||
        PyModule_AddIntConstant(m, "PRIORITY_BACKGROUND", WL_PRIORITY_BACKGROUND) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

/* wavelane._native: conversions between Python objects and the C ABI's arguments and results
 * (see _native.h). */
#include "_native.h"

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */

double monotonic_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}


void view_release(View *v) {
    Py_CLEAR(v->owner);
    v->ptr = NULL;
    v->len = 0;
}

/* TypeError "<arg> must be <expected>, not <type name>" (tp_name is not in the limited API). */
void type_error(const char *argname, const char *expected, PyObject *obj) {
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
int view_str(PyObject *obj, View *v, const char *argname) {
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
int view_opt_str(PyObject *obj, View *v, const char *argname) {
    v->owner = NULL;
    v->ptr = NULL;
    v->len = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    return view_str(obj, v, argname);
}

/* bytes or bytearray. bytearray is copied (it is mutable and the GIL may be released). */
int view_bytes(PyObject *obj, View *v, const char *argname) {
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
int view_payload(PyObject *obj, View *v, int *binary, const char *argname) {
    if (PyUnicode_Check(obj)) {
        *binary = 0;
        return view_str(obj, v, argname);
    }
    *binary = 1;
    return view_bytes(obj, v, argname);
}

int get_conn(PyObject *obj, uint64_t *out) {
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

PyObject *raise_err(PyObject *exc, const char *err, const char *fallback) {
    PyErr_SetString(exc, (err && err[0]) ? err : fallback);
    return NULL;
}

int check_open(EngineObject *self) {
    if (self->srv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "engine is closed");
        return -1;
    }
    return 0;
}

/* Text payload -> str, or (parse_json and it looks like an object/array) the parsed value. A client
 * controls this text: whatever json.loads raises for it (ValueError, RecursionError for deep nesting,
 * MemoryError...) gives the str instead, so one message never costs the rest of the batch. */
PyObject *decode_text(const char *data, size_t len, int parse_json) {
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
PyObject *decode_json(const char *data, size_t len) {
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

/* One batch -> list of (kind, conn, data). Unknown kinds (newer engines) are skipped. A tuple whose
 * data is a str, bytes, int or None can never be part of a reference cycle: it is untracked by the
 * garbage collector at once, so the collections that a batch of thousands of tuples triggers do not
 * walk them (they were ~5% of server CPU in the inbound benchmark). */
PyObject *build_events(const wl_event *evs, int n, int parse_json) {
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    Py_ssize_t count = 0;
    /* A read burst's events come from one connection in a row: its id object is made once. */
    PyObject *last_conn = NULL;
    uint64_t last_conn_id = 0;
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
        if (last_conn == NULL || last_conn_id != e->conn) {
            PyObject *made = PyLong_FromUnsignedLongLong((unsigned long long)e->conn);
            if (made == NULL) {
                Py_DECREF(data);
                goto fail;
            }
            Py_XDECREF(last_conn);
            last_conn = made;
            last_conn_id = e->conn;
        }
        PyObject *conn = last_conn;
        Py_INCREF(conn);
        PyObject *tup = PyTuple_New(3);
        if (tup == NULL) {
            Py_DECREF(conn);
            Py_DECREF(data);
            goto fail;
        }
        const int acyclic = PyUnicode_Check(data) || PyBytes_Check(data) || PyLong_Check(data) || data == Py_None;
        Py_INCREF(kind);
        PyTuple_SetItem(tup, 0, kind); /* steals */
        PyTuple_SetItem(tup, 1, conn);
        PyTuple_SetItem(tup, 2, data);
        if (acyclic)
            PyObject_GC_UnTrack(tup);
        PyList_SetItem(list, count++, tup); /* steals; the slot was empty */
    }
    Py_XDECREF(last_conn);
    last_conn = NULL;
    if (count < n && PyList_SetSlice(list, count, n, NULL) < 0) /* drop the slots of skipped kinds */
        goto fail;
    return list;
fail:
    Py_XDECREF(last_conn);
    Py_DECREF(list);
    return NULL;
}

/* Optional coalescing key: None or a str. */
int view_key(PyObject *key, View *v) {
    v->ptr = NULL;
    v->len = 0;
    v->owner = NULL;
    if (key == NULL || key == Py_None)
        return 0;
    return view_str(key, v, "key");
}

/* A string returned through the C ABI's one pattern (wavelane.h): *out malloc'd, freed here. */
PyObject *take_string(int64_t n, char *out, const char *err, int as_json) {
    if (n < 0) {
        wl_free(out);
        return raise_err(PyExc_RuntimeError, err, "the engine returned no string");
    }
    PyObject *v = as_json ? decode_json(out, (size_t)n) : PyUnicode_DecodeUTF8(out, (Py_ssize_t)n, "replace");
    wl_free(out);
    return v;
}

/* wavelane._native: the Engine methods that act on the server (see _native.h). */
#include "_native.h"

PyObject *Engine_publish(EngineObject *self, PyObject *args) {
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

PyObject *Engine_send(EngineObject *self, PyObject *args) {
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

PyObject *Engine_send_user(EngineObject *self, PyObject *args) {
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

PyObject *Engine_disconnect_user(EngineObject *self, PyObject *args) {
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

PyObject *Engine_subscribe(EngineObject *self, PyObject *args) {
    return subscribe_common(self, args, wl_subscribe, "OO|O:subscribe");
}

PyObject *Engine_unsubscribe(EngineObject *self, PyObject *args) {
    return subscribe_common(self, args, wl_unsubscribe, "OO|O:unsubscribe");
}

PyObject *Engine_deny(EngineObject *self, PyObject *args) {
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

PyObject *Engine_close(EngineObject *self, PyObject *args) {
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


PyObject *Engine_stats(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_stats(self->srv, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

PyObject *Engine_presence(EngineObject *self, PyObject *args) {
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

PyObject *Engine_node(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_node(self->srv, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

PyObject *Engine_set_presence_info(EngineObject *self, PyObject *args) {
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

PyObject *Engine_log_pending(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->srv == NULL)
        return PyLong_FromLong(0);
    return PyLong_FromLongLong((long long)wl_log_pending(self->srv));
}

/* Takes the waiting engine log records: a str of JSON lines ("" when none), at most ~64 KiB
 * of them per call (at least one record). */
PyObject *Engine_logs(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    ENGINE_CHECK(self);
    char err[ERR_LEN];
    err[0] = '\0';
    char *out = NULL;
    int64_t n = wl_logs(self->srv, 65536, &out, err, sizeof err);
    return take_string(n, out, err, 0);
}

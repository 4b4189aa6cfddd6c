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
#include "_native.h"

/* ------------------------------------------------------------------------------------------ */
/* Module state (single-phase init: one interpreter, process-wide globals).                    */

PyObject *json_loads = NULL; /* json.loads, fetched once */
PyObject *str_connect = NULL;
PyObject *str_message = NULL;
PyObject *str_disconnect = NULL;
PyObject *str_subscribe_request = NULL;
PyObject *str_dropped = NULL;
PyObject *str_cluster = NULL;
PyObject *str_refresh = NULL;
PyObject *str_rpc = NULL;
static PyObject *EngineType = NULL;


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


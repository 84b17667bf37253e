/* Batches of SysV message queue calls, for send's and recv's loops.
 *
 * sysv_ipc costs about 0.55 us a send and 0.6 us a receive from a Python loop
 * (it parses its arguments and allocates a buffer on every call), against
 * 0.25 us for the system call from C. These two functions make the calls for
 * a whole batch in one loop, with one buffer. Neither waits (IPC_NOWAIT), so
 * neither releases the GIL: a call is as short as the batch.
 *
 * Both stop at the first failure and say its errno, so that the caller deals
 * with it (waits for room, grows its buffer, raises) exactly as it does for a
 * single call. Nothing taken from the kernel is lost: see take_one.
 *
 * Optional: without a compiler ipctool installs without this module and the
 * plugin uses sysv_ipc alone (as it does when IPCTOOL_NO_NATIVE is set).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/msg.h>

/* What msgsnd and msgrcv read and write: the type, then the text. */
struct message {
    long mtype;
    char mtext[];
};

static struct message *
new_message(Py_ssize_t size)
{
    struct message *buffer = PyMem_Malloc(offsetof(struct message, mtext) + (size_t)size);
    if (buffer == NULL)
        PyErr_NoMemory();
    return buffer;
}

/* The longest message of the list, or -1 with TypeError if one is not bytes:
 * checked before anything is sent, so a bad list sends nothing. */
static Py_ssize_t
longest(PyObject *messages)
{
    Py_ssize_t most = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *item = PyList_GET_ITEM(messages, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "message %zd is %.200s, not bytes", i,
                         Py_TYPE(item)->tp_name);
            return -1;
        }
        if (PyBytes_GET_SIZE(item) > most)
            most = PyBytes_GET_SIZE(item);
    }
    return most;
}

PyDoc_STRVAR(send_many_doc,
"send_many(msqid, messages, mtype) -> (sent, errno)\n\n"
"msgsnd() with IPC_NOWAIT for each message of the list (bytes), in order, all\n"
"of type mtype. Stops at the first failure: sent is how many went, errno why\n"
"the next did not (EAGAIN: the queue is full), 0 if all went.");

static PyObject *
send_many(PyObject *Py_UNUSED(module), PyObject *args)
{
    int msqid;
    PyObject *messages;
    long mtype;
    if (!PyArg_ParseTuple(args, "iO!l:send_many", &msqid, &PyList_Type, &messages, &mtype))
        return NULL;
    Py_ssize_t size = longest(messages);
    if (size < 0)
        return NULL;
    /* One buffer for the batch, as large as its longest message: no Python code
     * runs in the loop below, so the list cannot change under it. */
    struct message *buffer = new_message(size);
    if (buffer == NULL)
        return NULL;
    buffer->mtype = mtype;
    Py_ssize_t sent = 0;
    int error = 0;
    for (; sent < PyList_GET_SIZE(messages); sent++) {
        PyObject *item = PyList_GET_ITEM(messages, sent);
        size_t length = (size_t)PyBytes_GET_SIZE(item);
        memcpy(buffer->mtext, PyBytes_AS_STRING(item), length);
        if (msgsnd(msqid, buffer, length, IPC_NOWAIT) == -1) {
            error = errno;
            break;
        }
    }
    PyMem_Free(buffer);
    /* If even this fails (MemoryError), nothing is lost: what went is in the
     * queue, and send ends with an error as after any other failure. */
    return Py_BuildValue("(ni)", sent, error);
}

/* What receive_many keeps between messages. */
struct receiving {
    PyObject *list;       /* the (data, type) pairs taken so far */
    PyObject *spare;      /* bytes of bufsize, made before a take (see take_one) */
    PyObject *last_type;  /* the last type as an int, reused while it repeats */
    long last_value;
};

/* The data of a message just taken, as bytes. If memory is too short for a new
 * object, the spare (made before the take, as large as any message) becomes
 * the message, shrunk in place: it is new and seen by no one, so its size may
 * still be set, and a bytes object longer in memory than its size is valid. */
static PyObject *
data_of(struct receiving *state, const char *text, Py_ssize_t size)
{
    PyObject *data = PyBytes_FromStringAndSize(text, size);
    if (data != NULL)
        return data;
    PyErr_Clear();
    data = state->spare;
    state->spare = NULL;
    memcpy(PyBytes_AS_STRING(data), text, (size_t)size);
    PyBytes_AS_STRING(data)[size] = '\0';
    Py_SET_SIZE(data, size);
    return data;
}

/* The type of a message just taken, as an int (a new reference). With a
 * positive selector every type is the selector, made before the first take;
 * types up to 256 are ints Python caches. Only a type above 256 that differs
 * from the last one needs memory after the take: see take_one. */
static PyObject *
type_of(struct receiving *state, long value)
{
    if (state->last_type == NULL || value != state->last_value) {
        PyObject *type = PyLong_FromLong(value);
        if (type == NULL)
            return NULL;
        Py_XSETREF(state->last_type, type);
        state->last_value = value;
    }
    return Py_NewRef(state->last_type);
}

/* A place for one more message at the end of the list: an empty pair (its
 * items are set once the message is taken), and the spare. 0, or -1 with a
 * Python exception set. */
static int
make_room(struct receiving *state, Py_ssize_t bufsize, PyObject **pair)
{
    if (state->spare == NULL) {
        state->spare = PyBytes_FromStringAndSize(NULL, bufsize);
        if (state->spare == NULL)
            return -1;
    }
    PyObject *made = PyTuple_New(2);
    if (made == NULL)
        return -1;
    int appended = PyList_Append(state->list, made);
    Py_DECREF(made); /* the list holds it (or, on failure, no one) */
    if (appended < 0)
        return -1;
    *pair = made;
    return 0;
}

/* Remove the empty pair make_room put last: shrinking a list's size needs no
 * memory (PyList_SetSlice may reallocate, and so fail). */
static void
drop_last(PyObject *list)
{
    Py_ssize_t last = PyList_GET_SIZE(list) - 1;
    PyObject *pair = PyList_GET_ITEM(list, last);
    Py_SET_SIZE(list, last);
    Py_DECREF(pair);
}

/* Take one message into the list: 0 if taken, else the errno that stops the
 * batch (ENOMEM for memory, with the Python exception cleared).
 *
 * Everything a message needs is made before msgrcv takes it (its pair, its
 * place in the list, the spare), so that a message never leaves the kernel to
 * be lost for want of memory. The one exception is a new type above 256 with a
 * selector of 0 or below: an int of 32 bytes made after the take. If even that
 * fails, the message is sent back to the end of the queue (lost only if the
 * queue filled in the meantime) and the batch stops with ENOMEM. Out of memory
 * the process cannot go on anyway; this keeps the messages taken so far, which
 * the caller writes before it fails. */
static int
take_one(struct receiving *state, int msqid, long mtype, struct message *buffer,
         Py_ssize_t bufsize)
{
    PyObject *pair;
    if (make_room(state, bufsize, &pair) < 0) {
        PyErr_Clear();
        return ENOMEM;
    }
    ssize_t size = msgrcv(msqid, buffer, (size_t)bufsize, mtype, IPC_NOWAIT);
    if (size == -1) {
        int error = errno;
        drop_last(state->list);
        return error;
    }
    PyObject *type = type_of(state, buffer->mtype);
    if (type == NULL) {
        PyErr_Clear();
        msgsnd(msqid, buffer, (size_t)size, IPC_NOWAIT); /* back, at the end */
        drop_last(state->list);
        return ENOMEM;
    }
    PyTuple_SET_ITEM(pair, 0, data_of(state, buffer->mtext, size));
    PyTuple_SET_ITEM(pair, 1, type);
    return 0;
}

PyDoc_STRVAR(receive_many_doc,
"receive_many(msqid, most, mtype, bufsize) -> (messages, errno)\n\n"
"msgrcv() with IPC_NOWAIT, selecting by mtype as msgrcv does, up to most times,\n"
"into a buffer of bufsize bytes. messages: a list of (data, type). Stops at the\n"
"first failure: errno says why (ENOMSG: none waiting; E2BIG: the next message\n"
"is larger than bufsize, and stays in the queue), 0 if most were taken.");

static PyObject *
receive_many(PyObject *Py_UNUSED(module), PyObject *args)
{
    int msqid;
    Py_ssize_t most, bufsize;
    long mtype;
    if (!PyArg_ParseTuple(args, "inln:receive_many", &msqid, &most, &mtype, &bufsize))
        return NULL;
    if (most < 0 || bufsize < 0) {
        PyErr_SetString(PyExc_ValueError, "most and bufsize must not be negative");
        return NULL;
    }
    /* The answer, its list and the buffer are made first: if one fails, nothing
     * was taken yet. */
    PyObject *result = PyTuple_New(2);
    if (result == NULL)
        return NULL;
    struct receiving state = {PyList_New(0), NULL, NULL, 0};
    if (state.list == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    struct message *buffer = new_message(bufsize);
    if (buffer == NULL) {
        Py_DECREF(state.list);
        Py_DECREF(result);
        return NULL;
    }
    if (mtype > 0) {
        state.last_type = PyLong_FromLong(mtype); /* the type of every message */
        state.last_value = mtype;
        if (state.last_type == NULL)
            PyErr_Clear(); /* type_of tries again after the first take */
    }
    int error = 0;
    for (Py_ssize_t taken = 0; taken < most && error == 0; taken++)
        error = take_one(&state, msqid, mtype, buffer, bufsize);
    PyMem_Free(buffer);
    Py_XDECREF(state.spare);
    Py_XDECREF(state.last_type);
    PyTuple_SET_ITEM(result, 0, state.list);
    PyTuple_SET_ITEM(result, 1, PyLong_FromLong(error)); /* a cached small int */
    return result;
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, send_many_doc},
    {"receive_many", receive_many, METH_VARARGS, receive_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ipctool_plugins.msgq._batch",
    .m_doc = "Batches of SysV msgsnd/msgrcv calls without waiting (see _batch.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    return PyModuleDef_Init(&module);
}

/* Batches of SysV message queue calls, for send's and recv's loops.
 *
 * sysv_ipc costs about 0.55 us a send and 0.6 us a receive from a Python loop
 * (it parses its arguments and allocates a buffer on every call), against
 * 0.25 us for the system call from C. send_many and receive_many make the
 * calls for a whole batch in one loop, with one buffer. Neither waits
 * (IPC_NOWAIT), so neither releases the GIL: a call is as short as the batch.
 *
 * Both stop at the first failure and say its errno, so that the caller deals
 * with it (waits for room, grows its buffer, raises) exactly as it does for a
 * single call. Nothing taken from the kernel is lost: see take_one.
 *
 * send_pieces and receive_pieces are a stream's loops (--stream, on its own
 * channel): read, msgsnd; msgrcv, write. A SysV queue holds two 8 KiB pieces,
 * so both ends wait about every other piece, and a Python loop around
 * blocking calls costs more than the piece. These wait in the kernel with the
 * GIL released, and return to Python whenever Python has something to look
 * at: a signal interrupted a wait (Ctrl-C, or the heartbeat SIGALRM that the
 * caller keeps beating, see ipctool/waiting.py), a control message came, the
 * input ended, a call failed, or `most` pieces went (so that a Ctrl-C that
 * landed between two system calls acts soon too). Neither loses a byte: see
 * each one.
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
#include <unistd.h>

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

/* Whether a message is a stream's control message: the caller's size and
 * prefix (ipctool/stream_protocol.py), which a piece never matches. */
static int
is_control(const char *text, ssize_t size, const Py_buffer *magic, Py_ssize_t control_size)
{
    return size == control_size && size >= magic->len &&
           memcmp(text, magic->buf, (size_t)magic->len) == 0;
}

/* Write all of text to fd: short writes and EINTR go on here, since a piece
 * taken from the queue exists nowhere else. 0, or -1 with errno set and *done
 * saying how much got out. */
static int
write_all(int fd, const char *text, size_t size, size_t *done)
{
    *done = 0;
    while (*done < size) {
        ssize_t n = write(fd, text + *done, size - *done);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        *done += (size_t)n;
    }
    return 0;
}

PyDoc_STRVAR(receive_pieces_doc,
"receive_pieces(msqid, mtype, bufsize, fd, block, most, magic, control_size)\n"
"    -> (written, pieces, errno, write_errno, control)\n\n"
"A stream's pieces: msgrcv() of type mtype into a buffer of bufsize bytes (waiting\n"
"when block is true), each piece written whole to fd, up to most pieces. Stops\n"
"at a control message (control_size bytes starting with magic), returned as\n"
"control and not written; at a failed msgrcv (errno: EINTR, a signal ended the\n"
"wait; ENOMSG, none waiting without block); or at a failed write (write_errno;\n"
"written counts what got out of that piece too). written: bytes written, pieces:\n"
"pieces written whole.");

static PyObject *
receive_pieces(PyObject *Py_UNUSED(module), PyObject *args)
{
    int msqid, fd, block;
    long mtype;
    Py_ssize_t bufsize, most, control_size;
    Py_buffer magic;
    if (!PyArg_ParseTuple(args, "ilnipny*n:receive_pieces", &msqid, &mtype, &bufsize, &fd,
                          &block, &most, &magic, &control_size))
        return NULL;
    struct message *buffer = bufsize < 0 ? NULL : new_message(bufsize);
    if (buffer == NULL) {
        if (bufsize < 0)
            PyErr_SetString(PyExc_ValueError, "bufsize must not be negative");
        PyBuffer_Release(&magic);
        return NULL;
    }
    size_t written = 0;
    Py_ssize_t pieces = 0;
    ssize_t control = -1;
    int error = 0, write_error = 0;
    /* No Python object is touched in the loop: the GIL is released for all of it. */
    Py_BEGIN_ALLOW_THREADS
    while (pieces < most) {
        ssize_t size = msgrcv(msqid, buffer, (size_t)bufsize, mtype, block ? 0 : IPC_NOWAIT);
        if (size == -1) {
            error = errno;
            break;
        }
        if (is_control(buffer->mtext, size, &magic, control_size)) {
            control = size;
            break;
        }
        size_t done;
        int failed = write_all(fd, buffer->mtext, (size_t)size, &done);
        written += done;
        if (failed) {
            write_error = errno;
            break;
        }
        pieces++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&magic);
    /* If the control message cannot be made (MemoryError), it is lost with the
     * stream: the receiver fails either way, after writing what it took. */
    PyObject *message = control < 0 ? Py_NewRef(Py_None)
                                    : PyBytes_FromStringAndSize(buffer->mtext, control);
    PyMem_Free(buffer);
    if (message == NULL)
        return NULL;
    return Py_BuildValue("(nniiN)", (Py_ssize_t)written, pieces, error, write_error, message);
}

PyDoc_STRVAR(send_pieces_doc,
"send_pieces(msqid, mtype, fd, size, most, magic, control_size)\n"
"    -> (sent, eof, errno, rest)\n\n"
"A stream's pieces: read() of up to size bytes from fd, each read sent as one\n"
"message of type mtype with a blocking msgsnd(), up to most pieces. Stops at the\n"
"end of the input (eof true); at a failed read (errno; EINTR: a signal ended the\n"
"wait, nothing was read); or with a piece read but not sent (rest): msgsnd\n"
"failed (errno, EINTR when a signal ended its wait), or the piece looks like a\n"
"control message (control_size bytes starting with magic; errno 0), which the\n"
"caller sends its own way. sent: bytes sent.");

static PyObject *
send_pieces(PyObject *Py_UNUSED(module), PyObject *args)
{
    int msqid, fd;
    long mtype;
    Py_ssize_t size, most, control_size;
    Py_buffer magic;
    if (!PyArg_ParseTuple(args, "ilinny*n:send_pieces", &msqid, &mtype, &fd, &size, &most,
                          &magic, &control_size))
        return NULL;
    struct message *buffer = size <= 0 ? NULL : new_message(size);
    if (buffer == NULL) {
        if (size <= 0)
            PyErr_SetString(PyExc_ValueError, "size must be positive");
        PyBuffer_Release(&magic);
        return NULL;
    }
    buffer->mtype = mtype;
    size_t sent = 0;
    ssize_t rest = -1;
    int error = 0, eof = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t pieces = 0; pieces < most; pieces++) {
        ssize_t got = read(fd, buffer->mtext, (size_t)size);
        if (got <= 0) {
            eof = got == 0;
            error = got == 0 ? 0 : errno;
            break;
        }
        if (is_control(buffer->mtext, got, &magic, control_size)) {
            rest = got;
            break;
        }
        if (msgsnd(msqid, buffer, (size_t)got, 0) == -1) {
            error = errno;
            rest = got;
            break;
        }
        sent += (size_t)got;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&magic);
    /* The piece not sent goes back as bytes; if even that cannot be made
     * (MemoryError), the sender fails and aborts the stream as after any error. */
    PyObject *unsent = rest < 0 ? Py_NewRef(Py_None)
                                : PyBytes_FromStringAndSize(buffer->mtext, rest);
    PyMem_Free(buffer);
    if (unsent == NULL)
        return NULL;
    return Py_BuildValue("(nOiN)", (Py_ssize_t)sent, eof ? Py_True : Py_False, error, unsent);
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, send_many_doc},
    {"receive_many", receive_many, METH_VARARGS, receive_many_doc},
    {"send_pieces", send_pieces, METH_VARARGS, send_pieces_doc},
    {"receive_pieces", receive_pieces, METH_VARARGS, receive_pieces_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ipctool_plugins.msgq._batch",
    .m_doc = "Batches of SysV msgsnd/msgrcv calls, and a stream's loops (see _batch.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    return PyModuleDef_Init(&module);
}

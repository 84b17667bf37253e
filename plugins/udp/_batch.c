/* Batches of datagrams for udp's send and recv loops: sendmmsg and recvmmsg.
 *
 * From a Python loop a datagram costs a call of socket.send or recv_into, a
 * slice and a tuple: about as much again as the system call itself, and
 * recv, which must keep up with a sender on this host or lose datagrams, is
 * the slower end. send_many and receive_many move a whole batch in one loop,
 * a few system calls for up to 64 datagrams each. Neither waits (MSG_DONTWAIT),
 * so neither releases the GIL: a call is as short as its batch, and the
 * caller does every wait (its --timeout, Ctrl-C) as it does for a single call.
 *
 * Both stop at the first failure and say its errno, so that the caller deals
 * with it (waits for room, raises) exactly as after a single call.
 *
 * Optional: without a compiler ipctool installs without this module and udp
 * runs its Python loops (as it does when IPCTOOL_NO_NATIVE is set).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define VLEN 64           /* datagrams a system call moves at most */
#define SLOT (1 << 16)    /* every UDP datagram fits: 65535 less its headers */

PyDoc_STRVAR(send_many_doc,
"send_many(fd, messages) -> (sent, errno)\n\n"
"Each message of the list (bytes) as one datagram on the connected socket fd,\n"
"in order, with sendmmsg and MSG_DONTWAIT. Stops at the first failure: sent is\n"
"how many went, errno why the next did not (EAGAIN: no room now), 0 if all went.");

static PyObject *
send_many(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    PyObject *messages;
    if (!PyArg_ParseTuple(args, "iO!:send_many", &fd, &PyList_Type, &messages))
        return NULL;
    Py_ssize_t total = PyList_GET_SIZE(messages);
    for (Py_ssize_t i = 0; i < total; i++) { /* checked before anything is sent */
        PyObject *item = PyList_GET_ITEM(messages, i);
        if (!PyBytes_Check(item))
            return PyErr_Format(PyExc_TypeError, "message %zd is %.200s, not bytes", i,
                                Py_TYPE(item)->tp_name);
    }
    /* The iovecs point into the bytes objects themselves: no Python code runs in
     * this loop, so the list and its items stay as they are. */
    struct mmsghdr headers[VLEN];
    struct iovec pieces[VLEN];
    Py_ssize_t sent = 0;
    int error = 0;
    while (sent < total) {
        unsigned int count = (unsigned int)(total - sent < VLEN ? total - sent : VLEN);
        memset(headers, 0, sizeof headers[0] * count);
        for (unsigned int i = 0; i < count; i++) {
            PyObject *item = PyList_GET_ITEM(messages, sent + (Py_ssize_t)i);
            pieces[i].iov_base = PyBytes_AS_STRING(item);
            pieces[i].iov_len = (size_t)PyBytes_GET_SIZE(item);
            headers[i].msg_hdr.msg_iov = &pieces[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        int went = sendmmsg(fd, headers, count, MSG_DONTWAIT);
        if (went < 0) {
            if (errno == EINTR)
                continue;
            error = errno;
            break;
        }
        /* Fewer than asked: the next one failed, and the kernel kept its error
         * for the next call, which says it (or sends it, if it has room now). */
        sent += went;
    }
    return Py_BuildValue("(ni)", sent, error);
}

PyDoc_STRVAR(receive_many_doc,
"receive_many(fd, most) -> (datagrams, errno)\n\n"
"Up to `most` datagrams waiting on the socket fd, with recvmmsg and\n"
"MSG_DONTWAIT, as a list of (data, None) pairs in the order they came. Stops\n"
"once none is waiting (errno EAGAIN when none was), at a datagram cut short\n"
"(EMSGSIZE: it is not in the list), or at another failure (its errno).");

/* One buffer of VLEN slots, made on the first call and kept for the process:
 * only the pages a datagram lands in are ever touched. */
static char *slots = NULL;

static PyObject *
receive_many(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "in:receive_many", &fd, &most))
        return NULL;
    if (slots == NULL && (slots = PyMem_RawMalloc((size_t)VLEN * SLOT)) == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    struct mmsghdr headers[VLEN];
    struct iovec pieces[VLEN];
    Py_ssize_t taken = 0;
    int error = 0;
    while (taken < most) {
        unsigned int count = (unsigned int)(most - taken < VLEN ? most - taken : VLEN);
        memset(headers, 0, sizeof headers[0] * count);
        for (unsigned int i = 0; i < count; i++) {
            pieces[i].iov_base = slots + (size_t)i * SLOT;
            pieces[i].iov_len = SLOT;
            headers[i].msg_hdr.msg_iov = &pieces[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(fd, headers, count, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            error = errno;
            break;
        }
        for (int i = 0; i < got; i++) {
            if (headers[i].msg_hdr.msg_flags & MSG_TRUNC) {
                error = EMSGSIZE; /* cannot happen to UDP: a slot holds any datagram */
                break;
            }
            /* Out of memory, the datagrams of this call not yet made into bytes
             * are lost, as the kernel drops datagrams when it is short of it. */
            PyObject *data = PyBytes_FromStringAndSize(pieces[i].iov_base,
                                                       (Py_ssize_t)headers[i].msg_len);
            PyObject *pair = data == NULL ? NULL : PyTuple_Pack(2, data, Py_None);
            Py_XDECREF(data);
            if (pair == NULL || PyList_Append(list, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(pair);
        }
        if (error)
            break;
        taken += got;
        if ((unsigned int)got < count)
            break; /* none waits now: the next call would say EAGAIN */
    }
    return Py_BuildValue("(Ni)", list, error);
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS, send_many_doc},
    {"receive_many", receive_many, METH_VARARGS, receive_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ipctool_plugins.udp._batch",
    .m_doc = "Batches of datagrams: sendmmsg and recvmmsg (see _batch.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    return PyModuleDef_Init(&module);
}

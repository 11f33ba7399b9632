"""C contract of the thread hand-off: one ring of operations, appended to from any thread
(under the GIL) and drained on the loop thread."""

from cpython.ref cimport Py_INCREF, PyObject


cdef extern from "Python.h":
    void release_ref "Py_DECREF"(PyObject* o)


cdef enum:
    OP_PUBLISH = 0
    OP_DIRECT = 1
    OP_SUBSCRIBE = 2
    OP_UNSUBSCRIBE = 3
    OP_RESUME = 4
    OP_ACCEPT = 5
    OP_RENUMBER = 6
    OP_PUBLISH_BINARY = 7
    OP_DIRECT_BINARY = 8
    OP_FORGET = 9
    OP_EVENT = 10          # an agent event (a dict) on a channel: numbered, encoded per encoding
    OP_CONTROL = 11        # a direct frame that overtakes what a lagging client has queued


cdef struct Op:
    int kind
    long long client_id
    unsigned long long since  # a resume's seq; a publish's latency stamp (ns, 0: none)
    PyObject* target     # channel or None: an owned reference
    PyObject* payload    # bytes, a list of frames, or None: an owned reference


cdef struct OpQueue:
    Op* items            # a ring: items[head] is the oldest of count
    Py_ssize_t head
    Py_ssize_t count
    Py_ssize_t capacity


cdef int ops_grow(OpQueue* q) except -1
cdef void ops_clear(OpQueue* q) noexcept
cdef void ops_shrink(OpQueue* q) noexcept


cdef inline int ops_push(OpQueue* q, int kind, long long client_id, object target,
                         object payload, unsigned long long since) except -1:
    """Append one operation, holding references to ``target`` and ``payload``.

    No Python code runs between reading and updating the ring, so callers on
    any thread are serialized by the GIL alone, as a deque append would be,
    without a tuple (and the garbage collector's attention) per message.
    """
    cdef Py_ssize_t tail
    cdef Op* op
    if q.count == q.capacity:
        ops_grow(q)
    tail = q.head + q.count
    if tail >= q.capacity:
        tail -= q.capacity
    op = &q.items[tail]
    op.kind = kind
    op.client_id = client_id
    op.since = since
    Py_INCREF(target)
    op.target = <PyObject*>target
    Py_INCREF(payload)
    op.payload = <PyObject*>payload
    q.count += 1
    return 0


cdef inline void ops_pop(OpQueue* q, Op* out) noexcept:
    """Move the oldest operation (and its references) to ``out``."""
    out[0] = q.items[q.head]
    q.head += 1
    if q.head == q.capacity:
        q.head = 0
    q.count -= 1

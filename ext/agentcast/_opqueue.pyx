# cython: language_level=3
"""The thread hand-off ring's slow paths: growing, clearing and giving memory back.

Appending and popping are inline in ``_opqueue.pxd``: they run once per message.
"""

from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef enum:
    SHRINK_OPS = 64 * 1024


cdef int ops_grow(OpQueue* q) except -1:
    """Double the ring, oldest operation first in the new one."""
    cdef Py_ssize_t capacity = max(64, 2 * q.capacity)
    cdef Py_ssize_t first = min(q.count, q.capacity - q.head)
    cdef Op* items = <Op*>malloc(capacity * sizeof(Op))
    if items == NULL:
        raise MemoryError()
    if q.count:
        memcpy(items, q.items + q.head, first * sizeof(Op))
        memcpy(items + first, q.items, (q.count - first) * sizeof(Op))
    free(q.items)
    q.items = items
    q.capacity = capacity
    q.head = 0
    return 0


cdef void ops_clear(OpQueue* q) noexcept:
    """Release every queued operation's references and the ring itself."""
    cdef Op op
    while q.count:
        ops_pop(q, &op)
        release_ref(op.target)
        release_ref(op.payload)
    free(q.items)
    q.items = NULL
    q.capacity = q.head = 0


cdef void ops_shrink(OpQueue* q) noexcept:
    """An empty ring that grew past ``SHRINK_OPS`` is given back (a burst is over)."""
    if q.count == 0 and q.capacity > SHRINK_OPS:
        ops_clear(q)

"""Growable byte buffers and RFC 6455 server frame headers: inline, so every use compiles
into its caller (no module, no call)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy


cdef enum:
    MAX_HEADER = 10                     # the longest server frame header: 64-bit length
    TEXT_FRAME = 0x81                   # first header byte: FIN + opcode 0x1
    BINARY_FRAME = 0x82                 # FIN + opcode 0x2
    SHRINK_ABOVE = 4 * 1024 * 1024      # a buffer larger than this is given back when reset


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef inline Py_ssize_t write_header(unsigned char* h, Py_ssize_t n,
                                    unsigned char first) noexcept nogil:
    """RFC 6455 header of an unmasked, final frame (``first``: ``TEXT_FRAME`` or
    ``BINARY_FRAME``) carrying ``n`` bytes; returns its length."""
    cdef int i
    h[0] = first
    if n < 126:
        h[1] = <unsigned char>n
        return 2
    if n < 65536:
        h[1] = 126
        h[2] = <unsigned char>(n >> 8)
        h[3] = <unsigned char>(n & 0xFF)
        return 4
    h[1] = 127
    for i in range(8):
        h[2 + i] = <unsigned char>((<unsigned long long>n >> (56 - 8 * i)) & 0xFF)
    return 10


cdef inline bytes joined_frame(const unsigned char* header, Py_ssize_t header_size,
                               const char* payload, Py_ssize_t size):
    """A header and its payload as one bytes object (one allocation, two copies)."""
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, header_size + size)
    if header_size:
        memcpy(PyBytes_AS_STRING(frame), header, header_size)
    memcpy(PyBytes_AS_STRING(frame) + header_size, payload, size)
    return frame


cdef inline bytes framed(bytes payload, unsigned char first):
    """The whole server frame carrying ``payload`` (``first``: ``TEXT_FRAME`` or
    ``BINARY_FRAME``), as one bytes object."""
    cdef unsigned char header[MAX_HEADER]
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    return joined_frame(header, write_header(header, n, first), PyBytes_AS_STRING(payload), n)


cdef inline bytes text_frame(bytes payload):
    """The whole server frame carrying ``payload`` as text, as one bytes object."""
    return framed(payload, TEXT_FRAME)


cdef inline Py_ssize_t write_decimal(char* out, unsigned long long n) noexcept nogil:
    """``n`` in decimal at ``out`` (at most 20 digits); returns the digit count."""
    cdef char digits[20]
    cdef Py_ssize_t count = 0, i
    while True:
        digits[count] = <char>(48 + n % 10)
        count += 1
        n //= 10
        if n == 0:
            break
    for i in range(count):
        out[i] = digits[count - 1 - i]
    return count


cdef inline int buf_reserve(Buffer* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = b.size + extra
    cdef Py_ssize_t cap
    cdef char* data
    if need <= b.capacity:
        return 0
    cap = b.capacity * 2 if b.capacity else 4096
    while cap < need:
        cap *= 2
    data = <char*>realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.capacity = cap
    return 0


cdef inline int buf_append_frame(Buffer* b, const unsigned char* header, Py_ssize_t header_size,
                                 const char* payload, Py_ssize_t size) except -1:
    buf_reserve(b, header_size + size)
    if header_size:
        memcpy(b.data + b.size, header, header_size)
    memcpy(b.data + b.size + header_size, payload, size)
    b.size += header_size + size
    return 0


cdef inline int buf_append(Buffer* b, const char* data, Py_ssize_t size) except -1:
    buf_reserve(b, size)
    memcpy(b.data + b.size, data, size)
    b.size += size
    return 0


cdef inline void buf_reset(Buffer* b) noexcept:
    """Empty the buffer; give back memory a large burst left behind."""
    b.size = 0
    if b.capacity > SHRINK_ABOVE:
        free(b.data)
        b.data = NULL
        b.capacity = 0


cdef inline void buf_free(Buffer* b) noexcept:
    free(b.data)
    b.data = NULL
    b.size = b.capacity = 0

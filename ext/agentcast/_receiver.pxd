"""C contract of the benchmark's compiled receiver: connections on one epoll, frames walked
and latencies stamped in C (see _receiver.pyx)."""

from libc.stdint cimport int64_t, uint32_t


cdef enum:
    MAX_HEADER = 10        # the longest server frame header: 64-bit length
    STAMP_BYTES = 40       # payload bytes kept to read '{"t":<send time>,'


cpdef enum Layout:         # of the latency histograms (whole microseconds)
    RUN_BITS = 8           # the run's: 256 sub-buckets, 2 significant digits
    CLIENT_BITS = 5        # a connection's: 32 sub-buckets, within 6.25 %
    HIGHEST_US = 100000000  # latencies above 100 s are counted as 100 s


cdef struct Stream:
    int fd                 # -1: fed by the caller, not on the epoll
    bint done              # has had the awaited frames in full
    unsigned char head[MAX_HEADER]
    int head_have          # header bytes of the next frame already in
    unsigned long long left  # payload bytes of the current frame still to come
    bint in_payload
    char stamp[STAMP_BYTES]
    int stamp_have         # payload bytes kept for the stamp; -1: this frame has none
    long long frames       # frames received in full
    uint32_t* latencies    # this connection's histogram (CLIENT_BITS), made on first stamp


cdef class Receiver:
    cdef int _epoll
    cdef int _control
    cdef double _max_nap
    cdef double _nap_share
    cdef Stream* _streams
    cdef Py_ssize_t _count
    cdef Py_ssize_t _capacity
    cdef unsigned char* _buffer
    cdef int64_t* _latencies       # the run's histogram (RUN_BITS)
    cdef long long _bytes
    cdef double _last_at
    cdef double _first_bytes_at    # of the current burst; 0: none yet
    cdef long long _target         # frames each connection is awaited for; -1: none
    cdef Py_ssize_t _waiting

    cdef int _feed(self, Stream* stream, const unsigned char* data, Py_ssize_t size,
                   double now) noexcept nogil
    cdef int _run(self, double deadline) noexcept nogil
    cdef int _read(self, Stream* stream) noexcept nogil
    cdef inline void _complete(self, Stream* stream) noexcept nogil
    cdef int _stamp(self, Stream* stream, double latency) noexcept nogil


cpdef Py_ssize_t bucket_count(int bits) noexcept nogil
cpdef Py_ssize_t bucket_index(long long value, int bits) noexcept nogil
cpdef long long highest_equivalent(Py_ssize_t index, int bits) noexcept nogil

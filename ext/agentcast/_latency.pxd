"""C contract of the publish-to-write latency histogram the core keeps."""

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef enum:
    LATENCY_SAMPLE_EVERY = 64   # publishes per latency sample
    LATENCY_BUCKETS = 15        # 14 bounds (LATENCY_BOUNDS_NS) and +Inf


cdef inline unsigned long long monotonic_ns() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <unsigned long long>now.tv_sec * 1_000_000_000 + now.tv_nsec


cdef class PublishLatency:
    cdef unsigned long long* samples            # this tick's stamps of fanned publishes
    cdef Py_ssize_t n_samples
    cdef Py_ssize_t samples_cap
    cdef unsigned long long buckets[LATENCY_BUCKETS]   # per bucket, not cumulative
    cdef unsigned long long count
    cdef unsigned long long sum_ns

    cdef int keep(self, unsigned long long stamp) except -1
    cdef int observe(self) except -1

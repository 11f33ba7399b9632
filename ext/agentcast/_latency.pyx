"""Publish-to-write latency: one publish in ``LATENCY_SAMPLE_EVERY`` carries the monotonic
time it was queued at; the tick that fans it out observes its latency when its write
round starts (never, if the frame reached no client's buffer), into a fixed histogram."""

from libc.stdlib cimport free, realloc

# Upper bounds of the histogram's buckets, in ns: 50 us to 1 s, 1-2.5-5 steps.
cdef unsigned long long LATENCY_BOUNDS_NS[LATENCY_BUCKETS - 1]
LATENCY_BOUNDS_NS[:] = [
    50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000]
LATENCY_BOUNDS = tuple(bound / 1e9 for bound in LATENCY_BOUNDS_NS)  # seconds
SAMPLE_EVERY = LATENCY_SAMPLE_EVERY


cdef class PublishLatency:
    """The histogram, and the stamps of this tick's fanned publishes until they are observed."""

    def __dealloc__(self):
        free(self.samples)

    cdef int keep(self, unsigned long long stamp) except -1:
        """Keep a fanned publish's stamp until this tick's write round (the array keeps its
        size: at most a tick's publishes / ``LATENCY_SAMPLE_EVERY``)."""
        cdef unsigned long long* samples
        if self.n_samples == self.samples_cap:
            samples = <unsigned long long*>realloc(
                self.samples, (2 * self.samples_cap + 8) * sizeof(unsigned long long))
            if samples == NULL:
                raise MemoryError()
            self.samples = samples
            self.samples_cap = 2 * self.samples_cap + 8
        self.samples[self.n_samples] = stamp
        self.n_samples += 1
        return 0

    cdef int observe(self) except -1:
        """The tick's write round starts: every kept stamp's latency goes into its bucket."""
        cdef unsigned long long now = monotonic_ns(), latency
        cdef Py_ssize_t i
        cdef int bucket
        for i in range(self.n_samples):
            latency = now - self.samples[i] if now > self.samples[i] else 0
            bucket = 0
            while bucket < LATENCY_BUCKETS - 1 and latency > LATENCY_BOUNDS_NS[bucket]:
                bucket += 1
            self.buckets[bucket] += 1
            self.sum_ns += latency
        self.count += self.n_samples
        self.n_samples = 0
        return 0

    def histogram(self):
        """(bucket upper bounds in s, without +Inf; counts per bucket, not cumulative, +Inf
        last; sum in s; count)."""
        return (LATENCY_BOUNDS, [self.buckets[i] for i in range(LATENCY_BUCKETS)],
                self.sum_ns / 1e9, self.count)

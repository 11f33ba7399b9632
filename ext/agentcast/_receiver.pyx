"""The benchmark's compiled receiver: one process's connections on one epoll, counted in C.

A load generator must cost less than the server it measures. This one reads each ready
socket once per wake-up into one buffer, walks the RFC 6455 server frame headers in C with
each connection's parse state in a ``Stream`` (frames split anywhere across reads), and for
every frame whose payload starts with ``{"t":<send time>,`` (see loadgen.messages) records the
publish-to-receive latency in the run's histogram and in that connection's own. The loop runs
without the GIL and returns to Python only for the parent's commands, when every connection
has the frames awaited, or at the deadline: no Python work per frame or per read.

Histograms are HdrHistogram's log-linear layout over whole microseconds, 0 .. 100 s: the run's
has 2 significant digits (``RUN_BITS``), a connection's 32 sub-buckets (``CLIENT_BITS``, 1.5 KiB,
made on its first stamped frame), enough for its p99 within 6.25 %. The run's counts are
exported raw, so processes and rounds merge exactly (loadgen.histogram).

Times are CLOCK_MONOTONIC, the clock of Python's ``time.monotonic()`` in the publisher.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc, strtod
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, nanosleep, timespec
from posix.unistd cimport close


cdef extern from "sys/epoll.h" nogil:
    ctypedef union epoll_data_t:
        uint64_t u64

    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data

    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)


cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void* buffer, size_t size, int flags)


cdef extern from *:
    int __builtin_clzll(unsigned long long value) nogil


cdef enum:
    RECV_BYTES = 256 * 1024
    MAX_EVENTS = 256
    TRICKLE_BYTES = 4096   # reads smaller than this on average: the server sends frame by frame
    STAMP_PREFIX = 5       # len('{"t":')


cpdef enum Ran:        # why ``Receiver.run`` returned
    RUN_CONTROL = 0        # the control connection is readable: the parent has a command
    RUN_DONE = 1           # every connection has the awaited frames
    RUN_DEADLINE = 2       # the deadline passed first
    RUN_INTERRUPTED = 3    # a signal: let Python run its handlers, then call again


cdef uint64_t CONTROL_KEY = <uint64_t>-1


cpdef Py_ssize_t bucket_count(int bits) noexcept nogil:
    """Counters a histogram with ``2**bits`` sub-buckets needs to reach ``HIGHEST_US``."""
    cdef long long smallest_untracked = 1LL << bits
    cdef Py_ssize_t buckets = 1
    while smallest_untracked <= HIGHEST_US:
        smallest_untracked <<= 1
        buckets += 1
    return (buckets + 1) << (bits - 1)


cpdef Py_ssize_t bucket_index(long long value, int bits) noexcept nogil:
    """HdrHistogram's counts index of ``value`` (unit 1, clamped to 0 .. HIGHEST_US)."""
    cdef int bucket, half_bits = bits - 1
    if value < 0:
        value = 0
    elif value > HIGHEST_US:
        value = HIGHEST_US
    bucket = 64 - __builtin_clzll(<unsigned long long>(value | ((1LL << bits) - 1))) - bits
    return ((bucket + 1) << half_bits) + (value >> bucket) - (1 << half_bits)


cpdef long long highest_equivalent(Py_ssize_t index, int bits) noexcept nogil:
    """The largest value counted at ``index``."""
    cdef int half_bits = bits - 1
    cdef long long bucket = (index >> half_bits) - 1
    cdef long long sub = (index & ((1 << half_bits) - 1)) + (1 << half_bits)
    if bucket < 0:
        sub -= 1 << half_bits
        bucket = 0
    return (sub << bucket) + (1LL << bucket) - 1


cdef long long client_p99(const uint32_t* counts) noexcept nogil:
    """Nearest-rank p99 of a connection's histogram (as loadgen.histogram computes it)."""
    cdef Py_ssize_t size = bucket_count(CLIENT_BITS), i
    cdef long long total = 0, seen = 0, rank
    for i in range(size):
        total += counts[i]
    if not total:
        return -1
    rank = min(total, <long long>(0.99 * total) + 1)
    for i in range(size):
        seen += counts[i]
        if seen >= rank:
            return highest_equivalent(i, CLIENT_BITS)
    return -1


cdef inline double monotonic() noexcept nogil:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef inline Py_ssize_t header_size(unsigned char second) noexcept nogil:
    """Length of a server frame header from its second byte (unmasked: no key)."""
    second &= 0x7F
    return 2 if second < 126 else (4 if second == 126 else 10)


cdef inline unsigned long long payload_size(const unsigned char* head) noexcept nogil:
    cdef unsigned char second = head[1] & 0x7F
    cdef unsigned long long size = 0
    cdef int i
    if second < 126:
        return second
    if second == 126:
        return (<unsigned long long>head[2] << 8) | head[3]
    for i in range(8):
        size = (size << 8) | head[2 + i]
    return size


cdef inline bint stamped(const unsigned char* payload) noexcept nogil:
    """Whether 5 payload bytes are ``{"t":``: compared by hand, as most differ at the third."""
    return (payload[2] == 116 and payload[0] == 123 and payload[1] == 34  # t { "
            and payload[3] == 34 and payload[4] == 58)                      # " :


cdef bint read_stamp(const unsigned char* payload, Py_ssize_t size, double* sent_at) noexcept nogil:
    """The send time of a payload that starts with ``{"t":<number>`` (``size`` bytes of it
    at hand); False when it does not."""
    cdef Py_ssize_t i = STAMP_PREFIX, digits = 0
    cdef unsigned long long whole = 0, fraction = 0, scale = 1
    cdef char number[STAMP_BYTES + 1]
    cdef char* end
    if size <= STAMP_PREFIX or not stamped(payload):
        return False
    while i < size and 48 <= payload[i] <= 57 and digits < 18:
        whole = whole * 10 + (payload[i] - 48)
        i += 1
        digits += 1
    if i < size and payload[i] == 46:  # '.'
        i += 1
        while i < size and 48 <= payload[i] <= 57:
            if scale < 1000000000000000ULL:  # digits past 1e-15 s change nothing
                fraction = fraction * 10 + (payload[i] - 48)
                scale *= 10
            i += 1
    if digits and i < size and (payload[i] == 44 or payload[i] == 125):  # ',' or '}'
        sent_at[0] = whole + <double>fraction / scale
        return True
    # an exponent, a sign or an unusual length: let strtod read it
    size = min(size, <Py_ssize_t>STAMP_BYTES)
    memcpy(number, payload + STAMP_PREFIX, size - STAMP_PREFIX)
    number[size - STAMP_PREFIX] = 0
    sent_at[0] = strtod(number, &end)
    return end != number


cdef class Receiver:
    """One receiver process's connections; ``run`` reads them until there is something to say.

    ``control_fd`` (the pipe to the parent, -1 for none) ends ``run`` when readable. When a
    wake-up brings only small reads (a server writing frame by frame), ``run`` sleeps so that
    frames pile up, for ``nap_share`` of the time since the burst's first bytes and at most
    ``max_nap`` seconds (0: never), which bounds what it adds to a burst's time or to a latency.
    """

    def __cinit__(self, int control_fd=-1, double max_nap=0.0, double nap_share=0.0):
        cdef epoll_event event
        self._epoll = epoll_create1(EPOLL_CLOEXEC)
        if self._epoll < 0:
            raise OSError(errno, "epoll_create1 failed")
        self._buffer = <unsigned char*>calloc(RECV_BYTES, 1)
        self._latencies = <int64_t*>calloc(bucket_count(RUN_BITS), sizeof(int64_t))
        if self._buffer == NULL or self._latencies == NULL:
            raise MemoryError()
        self._control = control_fd
        self._max_nap = max_nap
        self._nap_share = nap_share
        self._target = -1
        if control_fd >= 0:
            event.events = EPOLLIN
            event.data.u64 = CONTROL_KEY
            if epoll_ctl(self._epoll, EPOLL_CTL_ADD, control_fd, &event) < 0:
                raise OSError(errno, "epoll_ctl failed for the control connection")

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self._count):
            free(self._streams[i].latencies)
        free(self._streams)
        free(self._buffer)
        free(self._latencies)
        if self._epoll >= 0:
            close(self._epoll)

    def add(self, int fd=-1):
        """A new connection: a non-blocking socket the caller keeps open until the receiver
        is gone, or -1 for one whose bytes the caller hands to ``feed`` (a decrypting
        caller's, or a test's). Returns its index."""
        cdef epoll_event event
        cdef Stream* streams
        cdef Stream* stream
        if self._count == self._capacity:
            streams = <Stream*>realloc(
                self._streams, (self._capacity * 2 + 16) * sizeof(Stream)
            )
            if streams == NULL:
                raise MemoryError()
            self._streams = streams
            self._capacity = self._capacity * 2 + 16
        stream = &self._streams[self._count]
        memset(stream, 0, sizeof(Stream))
        stream.fd = fd
        if fd >= 0:
            event.events = EPOLLIN
            event.data.u64 = <uint64_t>self._count
            if epoll_ctl(self._epoll, EPOLL_CTL_ADD, fd, &event) < 0:
                raise OSError(errno, "epoll_ctl failed for a connection")
        self._count += 1
        if self._target >= 0:
            self._waiting += 1
        return self._count - 1

    def feed(self, Py_ssize_t index, const unsigned char[::1] data not None, double now):
        """Account for ``data``, the next bytes of connection ``index``, received at ``now``
        (``time.monotonic()``): the bytes that came with its upgrade reply, or all of them
        for a connection added without a socket."""
        if not 0 <= index < self._count:
            raise IndexError(f"no connection {index}")
        if data.shape[0]:
            self._bytes += data.shape[0]
            self._last_at = now
            self._feed(&self._streams[index], &data[0], data.shape[0], now)

    def await_frames(self, long long target):
        """From now on ``run`` returns ``RUN_DONE`` once every connection has ``target``
        frames in full; -1 stops waiting and starts a new burst."""
        cdef Py_ssize_t i
        self._target = target
        self._waiting = 0
        if target < 0:
            self._first_bytes_at = 0.0
            return
        for i in range(self._count):
            self._streams[i].done = self._streams[i].frames >= target
            self._waiting += not self._streams[i].done

    def run(self, double deadline):
        """Read until the parent writes, every connection has the awaited frames, or the
        ``time.monotonic()`` ``deadline`` (``inf``: none); returns why (``RUN_*``)."""
        cdef int result
        with nogil:
            result = self._run(deadline)
        if result < 0:
            raise OSError(errno, "epoll_wait failed")
        return result

    cdef int _run(self, double deadline) noexcept nogil:
        cdef epoll_event events[MAX_EVENTS]
        cdef int ready, i, timeout
        cdef long long reads, read_bytes, size
        cdef bint control
        cdef double now, pause
        cdef timespec nap
        while True:
            if self._target >= 0 and not self._waiting:
                return RUN_DONE
            timeout = -1
            if deadline < 1e300:
                now = monotonic()
                if now >= deadline:
                    return RUN_DEADLINE
                timeout = <int>(min(deadline - now, 1.0) * 1000) + 1
            ready = epoll_wait(self._epoll, events, MAX_EVENTS, timeout)
            if ready < 0:
                return RUN_INTERRUPTED if errno == EINTR else -1
            reads = read_bytes = 0
            control = False
            for i in range(ready):
                if events[i].data.u64 == CONTROL_KEY:
                    control = True
                    continue
                size = self._read(&self._streams[events[i].data.u64])
                if size:
                    reads += 1
                    read_bytes += size
            if control:
                return RUN_CONTROL
            if (self._max_nap > 0 and reads and read_bytes < reads * TRICKLE_BYTES
                    and self._first_bytes_at > 0 and (self._target < 0 or self._waiting)):
                pause = min(self._max_nap, self._nap_share * (monotonic() - self._first_bytes_at))
                nap.tv_sec = 0
                nap.tv_nsec = <long>(pause * 1e9)
                nanosleep(&nap, NULL)

    cdef int _read(self, Stream* stream) noexcept nogil:
        """One ``recv`` of a ready connection into the buffer, walked; returns its size."""
        cdef ssize_t size = recv(stream.fd, self._buffer, RECV_BYTES, 0)
        cdef double now
        cdef epoll_event unused
        if size > 0:
            now = monotonic()
            if self._first_bytes_at == 0:
                self._first_bytes_at = now
            self._bytes += size
            self._last_at = now
            self._feed(stream, self._buffer, size, now)
            return <int>size
        if size < 0 and (errno == EAGAIN or errno == EINTR):  # EWOULDBLOCK is EAGAIN
            return 0
        # closed by the server or failed: it stays waiting, the run is incomplete
        epoll_ctl(self._epoll, EPOLL_CTL_DEL, stream.fd, &unused)
        return 0

    cdef int _feed(self, Stream* stream, const unsigned char* data, Py_ssize_t size,
                   double now) noexcept nogil:
        """Walk ``size`` bytes of ``stream``: count the frames they complete, stamp them."""
        cdef Py_ssize_t pos = 0, need, keep
        cdef unsigned long long take
        cdef double sent_at
        while pos < size:
            if not stream.in_payload:
                if stream.head_have == 0 and size - pos >= 2:
                    need = header_size(data[pos + 1])
                    if size - pos >= need:  # the whole header in this read: no copy
                        stream.left = payload_size(data + pos)
                        pos += need
                        stream.in_payload = True
                        stream.stamp_have = 0
                        if stream.left <= <unsigned long long>(size - pos):
                            # the whole frame too: read its stamp in place
                            if (stream.left > STAMP_PREFIX and stamped(data + pos)
                                    and read_stamp(data + pos,
                                                   min(<Py_ssize_t>stream.left,
                                                       <Py_ssize_t>STAMP_BYTES), &sent_at)):
                                self._stamp(stream, now - sent_at)
                            pos += stream.left
                            self._complete(stream)
                        continue
                stream.head[stream.head_have] = data[pos]
                stream.head_have += 1
                pos += 1
                if stream.head_have >= 2 and stream.head_have == header_size(stream.head[1]):
                    stream.left = payload_size(stream.head)
                    stream.head_have = 0
                    stream.in_payload = True
                    stream.stamp_have = 0
                    if not stream.left:
                        self._complete(stream)
                continue
            take = min(stream.left, <unsigned long long>(size - pos))
            if 0 <= stream.stamp_have < STAMP_BYTES:
                keep = min(<Py_ssize_t>take, STAMP_BYTES - stream.stamp_have)
                memcpy(stream.stamp + stream.stamp_have, data + pos, keep)
                stream.stamp_have += keep
                if (stream.stamp_have >= STAMP_PREFIX
                        and not stamped(<unsigned char*>stream.stamp)):
                    stream.stamp_have = -1
            pos += take
            stream.left -= take
            if not stream.left:
                if stream.stamp_have > 0 and read_stamp(
                    <unsigned char*>stream.stamp, stream.stamp_have, &sent_at
                ):
                    self._stamp(stream, now - sent_at)
                self._complete(stream)
        return 0

    cdef inline void _complete(self, Stream* stream) noexcept nogil:
        stream.in_payload = False
        stream.frames += 1
        if self._target >= 0 and not stream.done and stream.frames >= self._target:
            stream.done = True
            self._waiting -= 1

    cdef int _stamp(self, Stream* stream, double latency) noexcept nogil:
        """Count ``latency`` (seconds) in the run's histogram and the connection's."""
        cdef long long micros = <long long>(latency * 1e6 + 0.5) if latency > 0 else 0
        self._latencies[bucket_index(micros, RUN_BITS)] += 1
        if stream.latencies == NULL:
            stream.latencies = <uint32_t*>calloc(bucket_count(CLIENT_BITS), sizeof(uint32_t))
            if stream.latencies == NULL:
                return -1  # out of memory: only the run's histogram has it
        stream.latencies[bucket_index(micros, CLIENT_BITS)] += 1
        return 0

    def take_latencies(self):
        """``(counts, worst_p99_us)``: the run's histogram (native int64 counts, RUN_BITS)
        and the highest p99 of any connection (µs, -1 with no samples), since the last
        call; both start again from zero."""
        cdef Py_ssize_t size = bucket_count(RUN_BITS), i
        cdef long long worst = -1
        counts = PyBytes_FromStringAndSize(<char*>self._latencies, size * sizeof(int64_t))
        memset(self._latencies, 0, size * sizeof(int64_t))
        for i in range(self._count):
            if self._streams[i].latencies != NULL:
                worst = max(worst, client_p99(self._streams[i].latencies))
                memset(self._streams[i].latencies, 0,
                       bucket_count(CLIENT_BITS) * sizeof(uint32_t))
        return counts, worst

    @property
    def frames(self):
        """Frames received in full over all connections."""
        cdef long long total = 0
        cdef Py_ssize_t i
        for i in range(self._count):
            total += self._streams[i].frames
        return total

    @property
    def bytes(self):
        """Bytes received over all connections, headers included."""
        return self._bytes

    @property
    def last_at(self):
        """``time.monotonic()`` of the last bytes received (0.0: none yet)."""
        return self._last_at

    @property
    def waiting(self):
        """Connections still short of the awaited frames."""
        return self._waiting

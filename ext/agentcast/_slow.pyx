"""The slow-consumer policy: a client whose unsent bytes pass its budget is closed with 1013
("close"), or ("skip") is sent no channel frames until it has drained to half its budget,
then told which seqs it missed. Frames addressed to it alone (acks, ``agent_response_end``,
errors) are never skipped: they are small, so they are sent and counted, and a client they
alone take over the budget while it skips is closed.

The core decides when (at each write) and keeps the per-client state; this unit decides
what, counts it and builds the notice.
"""

from agentcast._buffer cimport text_frame
from agentcast._history cimport Channel, ChannelTable
from agentcast._sink cimport Sink

import logging

log = logging.getLogger("agentcast.core")

TRY_AGAIN_LATER = 1013
SLOW_CONSUMER_REASON = "slow consumer: over byte budget"


cdef class Skipping:
    """One slow client's skip, from the write that took it over its budget until it drains."""

    def __cinit__(self):
        self.from_seq = {}


cdef class SlowConsumerPolicy:
    def __cinit__(self, str mode, Py_ssize_t budget, object notices):
        if mode not in ("close", "skip"):
            raise ValueError(f"slow_consumer must be 'close' or 'skip', not {mode!r}")
        if budget <= 0:
            raise ValueError("client_budget must be positive")
        self.skip = mode == "skip"
        self.budget = budget
        self.notices = notices

    cdef bint behind(self, Sink sink) except -1:
        """Still skipping: it has not drained to half its budget yet."""
        return sink.queued() > self.budget // 2

    cdef Skipping start_skipping(self, long long client_id, Py_ssize_t queued):
        """A new skip (the caller records where each of the client's channels stands)."""
        self.skip_episodes += 1
        log.info("client %d fell behind (%d bytes unsent): skipping", client_id, queued)
        return Skipping()

    cdef int count_skipped(self, Skipping skipping, Py_ssize_t frames) except -1:
        self.skipped_frames += frames
        skipping.frames += frames
        return 0

    cdef bint direct_overflows(self, Skipping skipping, Py_ssize_t size) except -1:
        """``size`` bytes addressed to a skipping client: do they, with the others sent since
        it started skipping, pass its budget (then it is closed, not sent them)?"""
        skipping.direct_bytes += size
        return skipping.direct_bytes > self.budget

    cdef bytes end_skipping(self, Skipping skipping, ChannelTable table,
                            unsigned long long tick, bint this_tick, dict live_from):
        """The client drained: the ``skipped`` notice's frame, naming the seqs it missed up to
        this tick (and this tick's, with ``this_tick``); a resume with ``since`` gets them."""
        cdef Channel state
        cdef unsigned long long last
        ranges = []
        for name, first in skipping.from_seq.items():
            state = table.get(name)  # subscribed: it has one
            last = state.last_seq if this_tick else state.seq_before(tick)
            if last >= first:
                ranges.append((name, first, last))
                live_from[name] = last + 1
        return text_frame(self.notices.skipped(skipping.frames, ranges))

    cdef int close(self, long long client_id, Sink sink, Py_ssize_t queued) except -1:
        self.dropped_clients += 1
        log.warning("client %d closed (1013): %d bytes unsent, budget %d",
                    client_id, queued, self.budget)
        sink.close(TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)
        return 0

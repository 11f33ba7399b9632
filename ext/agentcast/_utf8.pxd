# cython: language_level=3
"""Incremental UTF-8 validation (RFC 3629) for text messages that arrive in fragments.

The state is carried from one fragment to the next, so a code point split across
fragments passes, and the first byte that no valid text can contain is found in
the fragment that holds it (RFC 6455 8.1: fail fast). ASCII runs are skipped
8 bytes at a time.
"""

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy


cdef struct Utf8State:
    int pending     # continuation bytes still due for the current code point
    uint8_t low     # the range the next continuation byte must fall in
    uint8_t high    # (narrower after E0, ED, F0, F4: no overlongs, surrogates, > U+10FFFF)


cdef inline void utf8_reset(Utf8State* state) noexcept nogil:
    state.pending = 0
    state.low = 0x80
    state.high = 0xBF


cdef inline bint utf8_complete(const Utf8State* state) noexcept nogil:
    """True when the bytes fed so far end on a code point boundary."""
    return state.pending == 0


cdef inline bint utf8_feed(Utf8State* state, const uint8_t* data, Py_ssize_t size) noexcept nogil:
    """Feed the next bytes of a text; False as soon as they cannot be valid UTF-8."""
    cdef Py_ssize_t i = 0
    cdef uint64_t word
    cdef uint8_t byte
    cdef int pending = state.pending
    cdef uint8_t low = state.low
    cdef uint8_t high = state.high
    while i < size:
        if pending:
            byte = data[i]
            i += 1
            if byte < low or byte > high:
                return False
            pending -= 1
            low = 0x80
            high = 0xBF
            continue
        while i + 8 <= size:
            memcpy(&word, data + i, 8)
            if word & 0x8080808080808080ULL:
                break
            i += 8
        if i == size:
            break
        byte = data[i]
        i += 1
        if byte < 0x80:
            continue
        if 0xC2 <= byte <= 0xDF:
            pending = 1
        elif 0xE0 <= byte <= 0xEF:
            pending = 2
            if byte == 0xE0:
                low = 0xA0  # shorter forms are overlong
            elif byte == 0xED:
                high = 0x9F  # U+D800..U+DFFF are surrogates
        elif 0xF0 <= byte <= 0xF4:
            pending = 3
            if byte == 0xF0:
                low = 0x90  # overlong
            elif byte == 0xF4:
                high = 0x8F  # above U+10FFFF
        else:
            return False  # 80..C1 (stray continuation, overlong lead), F5..FF
    state.pending = pending
    state.low = low
    state.high = high
    return True

"""Redis key names and the publish script: one round trip numbers, stores and announces.

Per channel ``c`` (hash-tagged, so one channel's keys share a cluster slot):

- ``agentcast:{c}:meta``: hash with ``seq`` (the counter) and ``epoch`` (set
  when the counter is created: a broker that restarted without persistence
  gets a new epoch, so nodes can tell "numbering started over" from "old");
- ``agentcast:{c}:log``: stream of stamped payloads, entry id ``<seq>-0``,
  trimmed to about ``maxlen`` entries (the history a client can resume from);
- ``agentcast:{c}:pub:<publisher>``: the last publisher sequence applied,
  so a batch retried after a lost reply is not applied twice;
- pub/sub channel ``agentcast:{c}``: ``<epoch> <seq> <payload>`` for live delivery.

Broadcasts (no channel) go to pub/sub ``agentcast:all`` as
``<publisher> <index> <payload>``: not numbered, not stored.
"""

from __future__ import annotations

ALL = b"agentcast:all"
PUBLISHER_TTL = 86_400  # seconds a publisher's dedup marker outlives its last publish

# KEYS: meta, log, publisher marker. ARGV: payload, maxlen, pub/sub channel, publisher
# index, marker TTL. Returns the seq, or 0 when this publisher index was already applied.
PUBLISH = """
local last = redis.call('GET', KEYS[3])
if last and tonumber(last) >= tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', now[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local digits = string.format('%d', seq)
local payload = ARGV[1]
if #payload >= 2 and string.sub(payload, 1, 1) == '{' and string.sub(payload, -1) == '}' then
  if #payload > 2 then
    payload = string.sub(payload, 1, -2) .. ',"seq":' .. digits .. '}'
  else
    payload = '{"seq":' .. digits .. '}'
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], digits .. '-0', 'd', payload)
redis.call('PUBLISH', ARGV[3], epoch .. ' ' .. digits .. ' ' .. payload)
return seq
"""


def channel_name(channel: object) -> str:
    """Channels crossing the broker are agent ids: strings."""
    if not isinstance(channel, str):
        raise TypeError(f"with a backplane, channels are strings (agent ids), not {channel!r}")
    return channel


def meta_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}:meta".encode()


def log_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}:log".encode()


def publisher_key(channel: str, publisher: str) -> bytes:
    return f"agentcast:{{{channel}}}:pub:{publisher}".encode()


def pubsub_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}".encode()


def channel_of(pubsub: bytes) -> str:
    """The channel a ``pubsub_key`` names."""
    return pubsub.decode()[len("agentcast:{") : -1]

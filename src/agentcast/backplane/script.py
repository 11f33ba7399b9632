"""Redis key names and the publish script: one call numbers, stores and announces a batch.

Per channel ``c`` (hash-tagged, so one channel's keys share a cluster slot):

- ``agentcast:{c}:meta``: hash with ``seq`` (the counter) and ``epoch`` (set
  when the counter is created: a broker that restarted without persistence
  gets a new epoch, so nodes can tell "numbering started over" from "old");
- ``agentcast:{c}:log``: stream of stamped payloads, entry id ``<seq>-0``,
  trimmed to about ``maxlen`` entries (the history a client can resume from);
- ``agentcast:{c}:pub:<publisher>``: the last publisher index applied, so a
  batch sent again after a lost reply is not applied twice;
- pub/sub channel ``agentcast:{c}``: ``<epoch> <first seq> <len>:<payload>...``,
  a channel's consecutive messages of one batch in one announcement.

Broadcasts (no channel) go to pub/sub ``agentcast:all`` as
``<publisher> <index> <payload>``: not numbered, not stored. The script
announces a channel's pending messages before any broadcast that follows
them, so a publisher's order holds across the two.

The script names its keys itself (from ARGV), which a single Redis allows;
a Redis Cluster would need one batch per channel.
"""

from __future__ import annotations

ALL = b"agentcast:all"
PUBLISHER_TTL = 86_400  # seconds a publisher's dedup marker outlives its last publish

# ARGV: publisher, maxlen, marker TTL, then (index, channel or "" for everyone, payload)
# for each message. Returns each message's seq (0: a broadcast, or already applied).
PUBLISH = """
local publisher, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3]
local seqs, pending, order, markers = {}, {}, {}, {}

local function announce()
  for _, channel in ipairs(order) do
    local entry = pending[channel]
    local prefix = 'agentcast:{' .. channel .. '}'
    redis.call('SET', prefix .. ':pub:' .. publisher, markers[channel], 'EX', ttl)
    redis.call('PUBLISH', prefix,
               entry.epoch .. ' ' .. entry.first .. ' ' .. table.concat(entry.parts))
  end
  pending, order = {}, {}
end

for i = 4, #ARGV, 3 do
  local index, channel, payload = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local seq = 0
  if channel == '' then
    announce()
    redis.call('PUBLISH', 'agentcast:all', publisher .. ' ' .. ARGV[i] .. ' ' .. payload)
  else
    local prefix = 'agentcast:{' .. channel .. '}'
    if markers[channel] == nil then
      markers[channel] = tonumber(redis.call('GET', prefix .. ':pub:' .. publisher) or '0')
    end
    if index > markers[channel] then
      markers[channel] = index
      local entry = pending[channel]
      if entry == nil then
        local epoch = redis.call('HGET', prefix .. ':meta', 'epoch')
        if not epoch then
          local now = redis.call('TIME')
          epoch = now[1] .. string.format('%06d', now[2])
          redis.call('HSET', prefix .. ':meta', 'epoch', epoch)
        end
        entry = {epoch = epoch, parts = {}}
        pending[channel] = entry
        order[#order + 1] = channel
      end
      seq = redis.call('HINCRBY', prefix .. ':meta', 'seq', 1)
      local digits = string.format('%d', seq)
      if #payload >= 2 and string.sub(payload, 1, 1) == '{' and string.sub(payload, -1) == '}' then
        if #payload > 2 then
          payload = string.sub(payload, 1, -2) .. ',"seq":' .. digits .. '}'
        else
          payload = '{"seq":' .. digits .. '}'
        end
      end
      redis.call('XADD', prefix .. ':log', 'MAXLEN', '~', maxlen, digits .. '-0', 'd', payload)
      entry.first = entry.first or digits
      entry.parts[#entry.parts + 1] = #payload .. ':' .. payload
    end
  end
  seqs[#seqs + 1] = seq
end
announce()
return seqs
"""


def split_announcement(data: bytes) -> tuple[bytes, int, list[bytes]]:
    """``<epoch> <first seq> <len>:<payload>...`` -> (epoch, first seq, payloads)."""
    epoch, first, body = data.split(b" ", 2)
    payloads = []
    position = 0
    while position < len(body):
        colon = body.index(b":", position)
        end = colon + 1 + int(body[position:colon])
        payloads.append(body[colon + 1 : end])
        position = end
    return epoch, int(first), payloads


def channel_name(channel: object) -> str:
    """Channels crossing the broker are agent ids: strings."""
    if not isinstance(channel, str):
        raise TypeError(f"with a backplane, channels are strings (agent ids), not {channel!r}")
    return channel


def meta_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}:meta".encode()


def log_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}:log".encode()


def pubsub_key(channel: str) -> bytes:
    return f"agentcast:{{{channel}}}".encode()


def channel_of(pubsub: bytes) -> str:
    """The channel a ``pubsub_key`` names."""
    return pubsub.decode()[len("agentcast:{") : -1]

"""Redis key names and the publish script: one call numbers, stores and announces a batch.

Every message belongs to a *stream*: a channel ``c`` (prefix ``agentcast:{c}``,
hash-tagged so one channel's keys share a cluster slot) or the broadcasts to
every client (prefix ``agentcast:all``). Per stream prefix ``P``:

- ``P:meta``: hash with ``seq`` (the counter) and ``epoch`` (set when the
  counter is created: a broker that restarted without persistence, or lost the
  key, gets a new epoch, so nodes can tell "numbering started over" from "old");
- ``P:log``: stream of payloads, entry id ``<seq>-0``, trimmed to about
  ``maxlen`` entries (what a client, or a node catching up, can resume from).
  A new epoch starts a new log: the old one's ids would refuse seq 1;
- ``P:pub:<publisher>``: the last publisher index applied, so a batch sent
  again after a lost reply (by the outbox, or by redis-py's own retry) is not
  applied twice (unless the publisher was cut off for longer than the key TTL,
  which nodes following the stream do not renew for it);
- pub/sub channel ``P``: ``<epoch> <first seq> <len>:<payload>...``, the
  stream's consecutive messages of one batch in one announcement.

Every key expires ``key_ttl_ms`` after its stream was last used: each call
sets it again on the streams it touched (once per stream, not per message),
and nodes set it again on the streams they follow (``refresh_interval``).

A channel's payloads get ``"seq": N`` added; broadcasts keep theirs as they are
(clients see no seq on them, as without a backplane): their numbers serve the
nodes only, to deduplicate and to catch up after a reconnect. The script
announces what is pending before it switches between broadcasts and channel
messages, so a publisher's order holds across the two.

Each message is applied on its own: one that Redis refuses (a key of another
type, say) is answered with its error, and the ones before and after it are
still numbered, stored, marked and announced. A refusal that says "not now"
(``TRANSIENT``: a read-only replica, a Redis out of memory) ends the call
there instead: the rest is not tried, so the publisher can send it again, in
order. The script names its keys itself (from ARGV), which a single Redis
allows; a Redis Cluster would need one batch per stream.
"""

from __future__ import annotations

ALL = b"agentcast:all"
DEFAULT_CHANNEL_TTL = 300.0  # seconds: the Broadcaster's default channel_ttl
KEY_TTL_FACTOR = 2
REFRESH_INTERVAL_MAX = 30.0  # seconds between a node's refreshes of what it follows

# Redis's refusals that say "not now": a replica (a failover under way), a Redis
# loading its data, busy with a script, out of memory, without its primary or
# replicas. Sent again later, the same call succeeds.
TRANSIENT = ("READONLY", "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN",
             "NOREPLICAS", "OOM")  # fmt: skip


def key_ttl_ms(channel_ttl: float | None) -> int:
    """How long (ms) Redis keeps a stream's keys after their last use: twice the nodes'
    ``channel_ttl`` (None: the default's), so Redis forgets a channel only after every
    node did (a node frees an idle one within 1.25 ``channel_ttl``): a client away for
    longer than its node kept the channel still resumes from Redis. Short enough that
    ids used once, by a client or an attacker, are gone in minutes."""
    return max(1, round(KEY_TTL_FACTOR * (channel_ttl or DEFAULT_CHANNEL_TTL) * 1000))


def refresh_interval(channel_ttl: float | None) -> float:
    """Seconds between a node's refreshes of the keys of the streams it follows (a quiet
    channel with clients must outlive its TTL): a quarter of ``channel_ttl``, at most
    30 s, so several refreshes fit in one key TTL even if some fail."""
    return min((channel_ttl or DEFAULT_CHANNEL_TTL) / 4, REFRESH_INTERVAL_MAX)


def transient(error: bytes | str) -> bool:
    """Whether Redis's error text says "try again later" (see ``TRANSIENT``)."""
    text = error.decode(errors="replace") if isinstance(error, bytes) else error
    return text.split(" ", 1)[0] in TRANSIENT


# ARGV: publisher, maxlen, key TTL (ms), then (index, stream prefix, payload) for each
# message. Returns for each message [its seq, the stream's epoch]; for one applied
# before, [the stream's current seq (an upper bound), its epoch]; for one Redis
# refused, the error text. After a
# ``TRANSIENT`` error the rest of the batch is left out of the results: not applied.
PUBLISH = (
    """
local publisher, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3]
local results, streams, order, touched = {}, {}, {}, {}
local broadcasting = false
local transient = {"""
    + ", ".join(f"{code}=true" for code in TRANSIENT)
    + """}

-- A stream's counter, epoch and this publisher's marker, read once per call.
local function stream(prefix)
  local state = streams[prefix]
  if state == nil then
    local meta = redis.call('HMGET', prefix .. ':meta', 'epoch', 'seq')
    local marker = redis.call('GET', prefix .. ':pub:' .. publisher)
    state = {epoch = meta[1], seq = tonumber(meta[2] or '0'),
             marker = tonumber(marker or '0'), parts = {}}
    streams[prefix] = state
    touched[#touched + 1] = prefix
  end
  return state
end

-- What is pending, one PUBLISH per stream, once every counter and marker is written
-- back. A refused PUBLISH (an ACL) ends nothing: the messages are stored, and nodes
-- catch up from the stream when the next announcement skips them.
local function announce()
  for _, prefix in ipairs(order) do
    local state = streams[prefix]
    redis.call('SET', prefix .. ':pub:' .. publisher, state.marker, 'PX', ttl)
    redis.call('HSET', prefix .. ':meta', 'seq', state.seq)
  end
  for _, prefix in ipairs(order) do
    local state = streams[prefix]
    redis.pcall('PUBLISH', prefix,
                state.epoch .. ' ' .. state.first .. ' ' .. table.concat(state.parts))
    state.first, state.parts = nil, {}
  end
  order = {}
end

local function apply(index, prefix, payload)
  local state = stream(prefix)
  if index <= state.marker then
    return {state.seq, state.epoch}  -- applied before: its seq is at most this
  end
  if not state.epoch then
    -- A new numbering from 1, in a new log: the old one's top id would refuse seq 1.
    local log = prefix .. ':log'
    if redis.call('TYPE', log).ok == 'stream' then
      redis.call('DEL', log)
    end
    local now = redis.call('TIME')
    state.epoch, state.seq = now[1] .. string.format('%06d', now[2]), 0
    redis.call('HSET', prefix .. ':meta', 'epoch', state.epoch, 'seq', 0)
  end
  local seq = state.seq + 1
  local digits = string.format('%d', seq)
  if prefix ~= '"""
    + ALL.decode()
    + """' and #payload >= 2 and string.sub(payload, 1, 1) == '{'
      and string.sub(payload, -1) == '}' then
    if #payload > 2 then
      payload = string.sub(payload, 1, -2) .. ',"seq":' .. digits .. '}'
    else
      payload = '{"seq":' .. digits .. '}'
    end
  end
  redis.call('XADD', prefix .. ':log', 'MAXLEN', '~', maxlen, digits .. '-0', 'd', payload)
  state.seq, state.marker = seq, index  -- counted only once stored
  if not state.first then
    state.first = digits
    order[#order + 1] = prefix
  end
  state.parts[#state.parts + 1] = #payload .. ':' .. payload
  return {seq, state.epoch}
end

for i = 4, #ARGV, 3 do
  local prefix = ARGV[i + 1]
  local is_all = prefix == '"""
    + ALL.decode()
    + """'
  if is_all ~= broadcasting then
    announce()
    broadcasting = is_all
  end
  local ok, result = pcall(apply, tonumber(ARGV[i]), prefix, ARGV[i + 2])
  if not ok then
    result = type(result) == 'table' and (result.err or 'error') or tostring(result)
  end
  results[#results + 1] = result
  if not ok and transient[string.match(result, '^%S+')] then
    break  -- "not now": the rest is sent again, after this one
  end
end
announce()
for _, prefix in ipairs(touched) do  -- used: kept for another key TTL
  redis.call('PEXPIRE', prefix .. ':meta', ttl)
  redis.call('PEXPIRE', prefix .. ':log', ttl)
end
return results
"""
)


def split_announcement(data: bytes) -> tuple[bytes, int, list[bytes]]:
    """``<epoch> <first seq> <len>:<payload>...`` -> (epoch, first seq, payloads);
    ValueError if ``data`` is not one."""
    epoch, first, body = data.split(b" ", 2)
    payloads = []
    position = 0
    while position < len(body):
        colon = body.index(b":", position)
        end = colon + 1 + int(body[position:colon])
        if end > len(body):
            raise ValueError("announcement shorter than its lengths say")
        payloads.append(body[colon + 1 : end])
        position = end
    return epoch, int(first), payloads


def channel_name(channel: object) -> str:
    """Channels crossing the broker are agent ids: strings ("" is a channel like any other)."""
    if not isinstance(channel, str):
        raise TypeError(f"with a backplane, channels are strings (agent ids), not {channel!r}")
    return channel


def pubsub_key(channel: str | None) -> bytes:
    """The stream prefix of ``channel`` (None: the broadcasts), also its pub/sub channel."""
    return ALL if channel is None else f"agentcast:{{{channel}}}".encode()


def meta_key(channel: str | None) -> bytes:
    return pubsub_key(channel) + b":meta"


def log_key(channel: str | None) -> bytes:
    return pubsub_key(channel) + b":log"


def channel_of(pubsub: bytes) -> str | None:
    """The channel a ``pubsub_key`` names (None: the broadcasts)."""
    return None if pubsub == ALL else pubsub.decode()[len("agentcast:{") : -1]

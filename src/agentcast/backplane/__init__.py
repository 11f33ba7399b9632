"""Scale-out: every node delivers every agent's messages, numbered by one broker (Redis).

``script`` holds the key names and the Lua script that numbers a message and
stores and announces it in one round trip; ``outbox`` sends publishes from
any thread to Redis in pipelined batches; ``redis`` is a node's side: it
subscribes to the channels its clients need, feeds the compiled core, and
catches up after a broker hiccup. Importing this package needs ``redis``
(``pip install 'agentcast[redis]'``).
"""

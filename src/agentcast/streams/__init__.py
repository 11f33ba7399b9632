"""Agent event streams: runs of token deltas, tool calls and boundaries on a channel."""

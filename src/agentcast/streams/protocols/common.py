"""What more than one protocol encodes the same way: the stream's end, a tool result's
message id, token counts, and the table of an encoder's builders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from agentcast.streams.events import EVENT_KINDS

__all__ = ["DONE", "builders", "result_id", "token_counts"]

DONE: Final = b"[DONE]"
"""The last data of an AI SDK or Letta stream (``data: [DONE]``): their clients stop there."""

# a usage dict's key -> the count it gives, named as AG-UI's TokenUsage names them
_COUNTS: Final = {
    "input_tokens": "input_tokens",
    "prompt_tokens": "input_tokens",
    "inputTokens": "input_tokens",
    "output_tokens": "output_tokens",
    "completion_tokens": "output_tokens",
    "outputTokens": "output_tokens",
    "total_tokens": "total_tokens",
    "totalTokens": "total_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "reasoningTokens": "reasoning_tokens",
    "cached_input_tokens": "cached_input_tokens",
    "cachedInputTokens": "cached_input_tokens",
    "cache_write_input_tokens": "cache_write_input_tokens",
    "cache_write_tokens": "cache_write_input_tokens",
    "cacheWriteInputTokens": "cache_write_input_tokens",
}
_MAX_COUNT: Final = 2**53 - 1  # what every client's number survives


def builders(namespace: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """A protocol module's builders by event kind: each is named ``_<kind>`` there; a kind
    with none has no frame in that protocol."""
    return {kind: namespace[f"_{kind}"] for kind in sorted(EVENT_KINDS) if f"_{kind}" in namespace}


def result_id(tool_call_id: str) -> str:
    """The id of the message a tool call's result is: both AG-UI and Letta need one, and
    a replay must give the same."""
    return f"{tool_call_id}:result"


def token_counts(usage: Any) -> dict[str, int]:
    """The token counts a run's free-form ``usage`` gives (OpenAI's, Anthropic's or AG-UI's
    names), keyed as AG-UI names them; a count that is not a whole number in range is left
    out, since a client validates it and would fail the run for it."""
    if not isinstance(usage, dict):
        return {}
    counts: dict[str, int] = {}
    for key, value in usage.items():
        name = _COUNTS.get(key)
        if (
            name is not None
            and type(value) is int  # not a bool, not a float
            and 0 <= value <= _MAX_COUNT
        ):
            counts[name] = value
    return counts

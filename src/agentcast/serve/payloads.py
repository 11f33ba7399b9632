"""What a channel message must be: a JSON object without its own ``seq``.

The core numbers a channel's messages by writing ``,"seq":N`` before the object's
closing ``}``: a payload that is not an object would go out unnumbered (a resume could
not place it), and one with a ``seq`` of its own would go out with two. These checks
run in the publisher's thread, so they stay O(1): a type test and one key lookup for an
object, the first and last byte for serialized JSON (whose own ``seq`` is documented,
not searched for).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["check_channel_json", "check_channel_object"]

NOT_OBJECTS: Final = frozenset({list, tuple, str, bytes, bytearray, int, float, bool, type(None)})
"""Types that never serialize to a JSON object (a dataclass or pydantic model may)."""


def check_channel_object(obj: Any) -> None:
    """Raise unless ``obj`` can take a channel's ``seq``: ``TypeError`` for a value that
    is not an object, ``ValueError`` for a dict with a ``seq`` key of its own."""
    kind = type(obj)
    if kind is dict:
        if "seq" in obj:
            raise ValueError(
                "a channel message may not carry its own 'seq': the channel numbers its "
                "messages (rename the key, or publish with channel=None)"
            )
    elif kind in NOT_OBJECTS:
        raise TypeError(
            f"a channel message must be a JSON object (a dict), not {kind.__name__}: the "
            "channel adds its 'seq' to it (wrap it, or publish with channel=None)"
        )


def check_channel_json(data: bytes) -> None:
    """Raise ``TypeError`` unless ``data`` is a serialized JSON object (``{...}``, no
    surrounding whitespace): the channel writes its ``seq`` before the last ``}``."""
    if data[:1] != b"{" or data[-1:] != b"}":
        raise TypeError(
            "a channel message must be a serialized JSON object: bytes from '{' to '}' "
            "(publish with channel=None to send other JSON)"
        )

"""RFC 6902 JSON Patch on plain JSON values (dicts, lists, str, int, float, bool, None).

Small and exact: RFC 6901 pointers (``~0``/``~1``, array indexes without leading zeros,
``-`` only where ``add`` appends), the six operations, ``test`` comparing by JSON value
(``1 == 1.0``, ``True != 1``). Used on the loop thread to keep an open run's state document
for a watcher that joins mid-run, so a bad patch is a ``PatchError``, never anything else.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

__all__ = ["PatchError", "apply_patch", "json_equal"]

_INDEX: Final = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE: Final = re.compile(r"~(?![01])")


class PatchError(ValueError):
    """A patch that does not apply to the document: the operation and why."""


def apply_patch(doc: Any, patch: list[Any]) -> Any:
    """The document with every operation of ``patch`` applied, in order.

    Changes ``doc`` in place and returns the result (an operation on the root path ``""``
    replaces the whole document). On ``PatchError`` ``doc`` may be half changed: apply a
    patch to a copy when the original must survive a failure.
    """
    if not isinstance(patch, list):
        raise PatchError(f"a patch is a list of operations, not {type(patch).__name__}")
    for number, op in enumerate(patch):
        try:
            doc = _apply(doc, op)
        except PatchError as exc:
            raise PatchError(f"operation {number}: {exc}") from None
    return doc


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by value, booleans only to booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def _apply(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise PatchError(f"an operation is an object, not {type(op).__name__}")
    name = op.get("op")
    path = _pointer(op, "path")
    if name == "add":
        return _add(doc, path, copy.deepcopy(_value(op)))
    if name == "remove":
        return _remove(doc, path)
    if name == "replace":
        value = copy.deepcopy(_value(op))
        _get(doc, path)  # the target must exist
        return _replace(doc, path, value)
    if name == "move":
        source = _pointer(op, "from")
        if path[: len(source)] == source and len(path) > len(source):
            raise PatchError("move: 'from' is a proper prefix of 'path'")
        value = _get(doc, source)
        if source == path:
            return doc
        return _add(_remove(doc, source), path, value)
    if name == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, _pointer(op, "from"))))
    if name == "test":
        if not json_equal(_get(doc, path), _value(op)):
            raise PatchError(f"test: the value at {op['path']!r} differs")
        return doc
    raise PatchError(f"unknown op {name!r}; one of add, remove, replace, move, copy, test")


def _value(op: dict[str, Any]) -> Any:
    if "value" not in op:
        raise PatchError(f"{op['op']}: 'value' is required")
    return op["value"]


def _pointer(op: dict[str, Any], member: str) -> list[str]:
    """The RFC 6901 pointer in ``op[member]`` as its reference tokens."""
    pointer = op.get(member)
    if not isinstance(pointer, str):
        raise PatchError(f"'{member}' must be a JSON pointer string")
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"{member} {pointer!r}: a pointer starts with '/'")
    if _BAD_ESCAPE.search(pointer):
        raise PatchError(f"{member} {pointer!r}: '~' must be followed by 0 or 1")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _index(array: list[Any], token: str, room: int = 0) -> int:
    """The array index ``token`` names; ``room=1`` allows one past the end (add)."""
    if not _INDEX.fullmatch(token):
        raise PatchError(f"{token!r} is not an array index")
    index = int(token)
    if index >= len(array) + room:
        raise PatchError(f"index {index} is out of range (length {len(array)})")
    return index


def _get(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise PatchError(f"no member {token!r}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token)]
        else:
            raise PatchError(f"{token!r} names inside a {type(doc).__name__}")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _get(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            parent.insert(_index(parent, last, room=1), value)
    else:
        raise PatchError(f"add: {last!r} names inside a {type(parent).__name__}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("remove: the whole document cannot be removed")
    parent, last = _get(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"remove: no member {last!r}")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last)]
    else:
        raise PatchError(f"remove: {last!r} names inside a {type(parent).__name__}")
    return doc


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _get(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:  # a list: _get(doc, tokens) already checked the index
        parent[_index(parent, last)] = value
    return doc

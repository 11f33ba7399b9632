"""RFC 6902 JSON Patch as the open runs apply it: the RFC's own examples, and every error."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentcast.streams.patch import PatchError, apply_patch, json_equal

# RFC 6902 appendix A: (section, document, patch, result)
RFC_EXAMPLES: list[tuple[str, Any, list[Any], Any]] = [
    (
        "A.1",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ("A.3", {"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    (
        "A.4",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    ("A.14", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    (
        "A.16",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
]


@pytest.mark.parametrize(("section", "doc", "patch", "result"), RFC_EXAMPLES)
def test_the_rfcs_examples_apply(section: str, doc: Any, patch: list[Any], result: Any) -> None:
    assert apply_patch(doc, patch) == result


@pytest.mark.parametrize(
    ("section", "doc", "patch", "words"),
    [
        ("A.9", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "differs"),
        (
            "A.12",
            {"foo": "bar"},
            [{"op": "add", "path": "/baz/bat", "value": "qux"}],
            "no member 'baz'",
        ),
        ("A.15", {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "differs"),
    ],
)
def test_the_rfcs_failing_examples_fail(
    section: str, doc: Any, patch: list[Any], words: str
) -> None:
    with pytest.raises(PatchError, match=words):
        apply_patch(doc, patch)


@pytest.mark.parametrize(
    ("doc", "op", "words"),
    [
        ({}, {"op": "remove", "path": "/a"}, "no member 'a'"),
        ({"a": [1]}, {"op": "remove", "path": "/a/1"}, "out of range"),
        ({"a": [1]}, {"op": "remove", "path": "/a/-"}, "not an array index"),
        ({"a": [1]}, {"op": "replace", "path": "/a/01", "value": 2}, "not an array index"),
        ({"a": [1]}, {"op": "add", "path": "/a/2", "value": 2}, "out of range"),
        ({"a": [1]}, {"op": "add", "path": "/a/+1", "value": 2}, "not an array index"),
        ({"a": 1}, {"op": "add", "path": "/a/b", "value": 2}, "inside a int"),
        ({"a": 1}, {"op": "replace", "path": "/b", "value": 2}, "no member 'b'"),
        ({"a": 1}, {"op": "add", "path": "/a"}, "'value' is required"),
        ({"a": 1}, {"op": "add", "path": "a", "value": 1}, "starts with '/'"),
        ({"a": 1}, {"op": "add", "path": "/~2", "value": 1}, "followed by 0 or 1"),
        ({"a": 1}, {"op": "add", "path": 3, "value": 1}, "'path' must be a JSON pointer"),
        ({"a": 1}, {"op": "copy", "path": "/b"}, "'from' must be a JSON pointer"),
        ({"a": {"b": 1}}, {"op": "move", "from": "/a", "path": "/a/b/c"}, "proper prefix"),
        ({"a": 1}, {"op": "move", "from": "/x", "path": "/y"}, "no member 'x'"),
        ({"a": 1}, {"op": "remove", "path": ""}, "whole document"),
        ({"a": 1}, {"op": "merge", "path": "/a"}, "unknown op 'merge'"),
        ({"a": 1}, "add", "an operation is an object"),
        ({"a": True}, {"op": "test", "path": "/a", "value": 1}, "differs"),
        ({"a": 1}, {"op": "test", "path": "/a", "value": True}, "differs"),
        ({"a": None}, {"op": "test", "path": "/a", "value": 0}, "differs"),
        ({"a": [1, 2]}, {"op": "test", "path": "/a", "value": [1]}, "differs"),
        ({"a": {"b": 1}}, {"op": "test", "path": "/a", "value": {"b": 1, "c": 2}}, "differs"),
    ],
)
def test_a_bad_operation_is_a_patch_error_naming_it(doc: Any, op: Any, words: str) -> None:
    with pytest.raises(PatchError, match=f"operation 1: .*{words}"):
        apply_patch(doc, [{"op": "add", "path": "/_", "value": 0}, op])  # the second one fails


def test_a_patch_must_be_a_list() -> None:
    with pytest.raises(PatchError, match="a patch is a list of operations, not dict"):
        apply_patch({}, {"op": "add"})  # type: ignore[arg-type]


def test_the_root_path_replaces_the_whole_document() -> None:
    assert apply_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]
    assert apply_patch({"a": 1}, [{"op": "add", "path": "", "value": "x"}]) == "x"
    assert apply_patch([1], [{"op": "test", "path": "", "value": [1.0]}]) == [1]


def test_pointers_unescape_tilde_one_before_tilde_zero() -> None:
    doc = {"a/b": 1, "m~n": 2, "~1": 3, "": 4}
    patch = [
        {"op": "test", "path": "/a~1b", "value": 1},
        {"op": "test", "path": "/m~0n", "value": 2},
        {"op": "test", "path": "/~01", "value": 3},
        {"op": "test", "path": "/", "value": 4},
    ]
    assert apply_patch(doc, patch) == doc


def test_copy_and_add_do_not_alias_values() -> None:
    value = {"x": [1]}
    patch = [
        {"op": "add", "path": "/a", "value": value},
        {"op": "copy", "from": "/a", "path": "/b"},
        {"op": "add", "path": "/a/x/-", "value": 2},
    ]
    assert apply_patch({}, patch) == {"a": {"x": [1, 2]}, "b": {"x": [1]}}
    assert value == {"x": [1]}  # the patch (the event) is not changed


def test_move_to_itself_and_ops_in_order() -> None:
    doc = {"a": [1, 2, 3]}
    patch = [
        {"op": "move", "from": "/a", "path": "/a"},
        {"op": "move", "from": "/a/0", "path": "/a/-"},
        {"op": "copy", "from": "/a/0", "path": "/a/0"},
        {"op": "remove", "path": "/a/3"},
    ]
    assert apply_patch(copy.deepcopy(doc), patch) == {"a": [2, 2, 3]}


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        (None, None, True),
        ("1", 1, False),
        ([1, [2]], [1.0, [2]], True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ({"a": [True]}, {"a": [1]}, False),
    ],
)
def test_json_equal_compares_as_json(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal

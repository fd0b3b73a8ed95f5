"""Reading grid files as plain, bounded data: the YAML loader every grid file goes through.

Grid files hold text, numbers, true/false, null, lists and mappings, nothing else. Compared with
yaml.safe_load this loader:
- resolves plain scalars by YAML 1.2's core schema: `yes`, `on`, `2024-01-01`, `1:30` and `0777`
  stay the text that was written (a setting that wants true/false or a number reads that text
  itself), while `1e-3` is a number;
- refuses every other tag (`!!binary`, `!!set`, `!!timestamp`, `!!omap`, object tags);
- refuses duplicate keys (YAML would silently keep the last one);
- bounds what a small file can make the reader do: nesting depth, the size of the data once
  aliases are expanded (an alias bomb), recursive aliases, and the digits of a number.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 32  # levels of nesting; a grid needs about 4
MAX_NODES = 200_000  # values once aliases are expanded: a 100,000-job grid, value by value
MAX_NUMBER_CHARS = 40  # 2**64 has 20 digits; a float needs about 25 characters


class PlainYamlError(yaml.YAMLError):
    """Input that is valid YAML but not plain, bounded data; the message is one line."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_NULL = re.compile(r"~|null|Null|NULL|")


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema for plain scalars; everything else is text."""


for _tag, _pattern, _first in (
        ("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
        ("tag:yaml.org,2002:null", _NULL, "~nN"),
        ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
        ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
        ("tag:yaml.org,2002:float", _INF, "-+."),
        ("tag:yaml.org,2002:float", _NAN, "."),
):
    _CoreResolver.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern.pattern})$"),
                                        list(_first))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])
_MERGE = "tag:yaml.org,2002:merge"


class _Constructor(yaml.constructor.SafeConstructor):
    """Plain data only: no timestamps, binary, sets, ordered maps or pairs."""

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node).replace("_", "")
        _check_length(text, node)
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = str(self.construct_scalar(node))
        lower = text.lower()
        if lower.endswith(".inf"):
            return float("-inf") if lower.startswith("-") else float("inf")
        if lower == ".nan":
            return float("nan")
        _check_length(text, node)
        return float(text)

    def construct_yaml_bool(self, node: ScalarNode) -> bool:
        return str(self.construct_scalar(node)).lower() == "true"

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:  # `<<: *base` merges; explicit keys then win, as in YAML
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise PlainYamlError("a mapping key must be text or a number, not a list or a "
                                     "mapping", key_node.start_mark) from None
            if key in seen:
                line = seen[key].start_mark.line + 1
                raise PlainYamlError(f"duplicate key {_short(key)} (first set on line {line}; "
                                     "keep one)", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_undefined(self, node: Node) -> Any:
        raise PlainYamlError(f"tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed "
                             "(grid files hold plain data: text, numbers, true/false, lists, "
                             "mappings)", node.start_mark)


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)
_Constructor.add_constructor("tag:yaml.org,2002:float", _Constructor.construct_yaml_float)
_Constructor.add_constructor("tag:yaml.org,2002:bool", _Constructor.construct_yaml_bool)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _Constructor.construct_undefined)
_Constructor.add_constructor(None, _Constructor.construct_undefined)


def _check_length(text: str, node: Node) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise PlainYamlError(f"a number of {len(text)} characters ({text[:12]}...); numbers "
                             f"here have at most {MAX_NUMBER_CHARS}", node.start_mark)


class _Composer(yaml.composer.Composer):
    """Refuses nesting deeper than MAX_DEPTH while the node tree is built (not recursively)."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise PlainYamlError(f"nested more than {MAX_DEPTH} levels deep",
                                     self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class PlainLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Composer,
                  _Constructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Composer.__init__(self)
        _Constructor.__init__(self)
        _CoreResolver.__init__(self)


def load(text: str) -> Any:
    """The plain data in YAML `text`; raises yaml.YAMLError (PlainYamlError when not plain)."""
    loader = PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: Node) -> None:
    """Count the values the document holds once aliases are expanded; refuse cycles.

    An alias is the same node object as its anchor, so sizes are memoised per node: the count
    costs one visit per distinct node, however large the expansion it describes.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            visiting.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_NODES:
                raise PlainYamlError(f"the data holds more than {MAX_NODES:,} values once "
                                     "its aliases are expanded", node.start_mark)
            sizes[key] = size
            continue
        if key in visiting:
            raise PlainYamlError("an alias refers to the value that holds it (a recursive "
                                 "alias)", node.start_mark)
        visiting.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in visiting:
                raise PlainYamlError("an alias refers to the value that holds it (a recursive "
                                     "alias)", child.start_mark)
            stack.append((child, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"

"""YAML read from users (ensemble files and their calibration blocks, configs, protocols, option
values) with a cap on its size once its aliases are expanded, and written without aliases.

A YAML alias (`*name`) repeats the node its anchor (`&name`) names: nine levels of nine aliases
each in a 1.2 KB file make hundreds of millions of values (PyYAML shares them, but whatever walks
or writes the document meets each one: 8 GB, then a MemoryError traceback), the "billion laughs".
`safe_load` counts every node as the document will be seen, each alias as the whole node it
repeats, while the document is composed, and refuses one over MAX_NODES (or an alias inside the
node it names, which never ends) with a one-line YAMLError before anything is built. Aliases that
stay small load as before: PyYAML's own safe_dump writes one wherever an object appears twice. A
document nested too deeply for the parser's recursion is a YAMLError too, not a RecursionError,
and so is an integer of more than 4300 digits, which Python refuses to read (a ValueError that
named neither the file nor the line). A document longer than MAX_CHARACTERS is refused before it
is parsed: PyYAML reads about 150 KB a second, and a 3.7 MB document took 25 s to be refused by
the count of its values. `safe_dump` writes shared objects out in full.
"""

from __future__ import annotations

import sys

import yaml

MAX_NODES = 1_000_000  # values, keys and collections of a document, aliases expanded
MAX_CHARACTERS = 20_000_000  # a calibration block of 100,000 videos' scores is about 2.5 MB


class YAMLSizeError(yaml.YAMLError):
    """A document too large once its aliases are expanded, or one that names itself (one line)."""


class YAMLNestingError(yaml.YAMLError):
    """A YAML document nested deeper than the parser can follow."""


class YAMLNumberError(yaml.YAMLError):
    """An integer with more digits than Python reads."""


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, counting each node as expanded (an alias as all of the node it names)
    and refusing a document of more than MAX_NODES, or a node that contains an alias of itself."""

    def __init__(self, stream):
        super().__init__(stream)
        self.expanded_sizes: dict[int, int] = {}  # id(node) -> its nodes, aliases expanded
        self.composed = 0  # nodes composed so far, each alias counted as the node it names
        self.has_aliases = False

    def _count(self, nodes: int, line: int) -> None:
        """Count `nodes` more as composed; refused as soon as the count passes MAX_NODES, not
        once the collection holding them is closed (a flat 20 MB mapping, minutes of parsing)."""
        self.composed += nodes
        if self.composed > MAX_NODES:
            expanded = " once its aliases are expanded" if self.has_aliases else ""
            raise YAMLSizeError(
                f"the YAML document would hold more than {MAX_NODES:,} values{expanded} (at line {line + 1})"
            )

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            named = self.anchors.get(event.anchor)
            if named is not None and id(named) not in self.expanded_sizes:
                raise YAMLSizeError(
                    f"the YAML alias *{event.anchor} at line {event.start_mark.line + 1} is inside the node it names: "
                    "a value that never ends"
                )
            self.has_aliases = True
            node = super().compose_node(parent, index)  # the node it names
            self._count(self.expanded_sizes[id(node)], event.start_mark.line)
            return node
        node = super().compose_node(parent, index)
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self.expanded_sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self.expanded_sizes[id(key)] + self.expanded_sizes[id(value)] for key, value in node.value)
        self._count(1, node.end_mark.line)  # its contents are counted already
        self.expanded_sizes[id(node)] = size
        return node

    def construct_yaml_int(self, node):
        """An integer, or a one-line YAMLError for one of more digits than Python reads or writes
        (a ValueError from int() or later from repr(); 0x integers are read at any length)."""
        digits = sys.get_int_max_str_digits()
        try:
            value = super().construct_yaml_int(node)
        except ValueError:
            value = None
        if value is None or abs(value) >= 10**digits:
            raise YAMLNumberError(
                f"the integer at line {node.start_mark.line + 1} has more than {digits} digits, more than Python "
                "reads or writes"
            ) from None
        return value


BoundedSafeLoader.add_constructor("tag:yaml.org,2002:int", BoundedSafeLoader.construct_yaml_int)


class NoAliasSafeDumper(yaml.SafeDumper):
    """PyYAML's SafeDumper, writing an object met twice out again instead of as an alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def safe_load(stream):
    """`yaml.safe_load` with a cap on the document's size, aliases expanded: a one-line YAMLError
    for a document over MAX_CHARACTERS or MAX_NODES, an alias of a node inside itself, nesting too
    deep, or an integer of more digits than Python reads."""
    if not isinstance(stream, (str, bytes)):
        stream = stream.read(MAX_CHARACTERS + 1)  # a file: no more of it than is read
    if len(stream) > MAX_CHARACTERS:
        raise YAMLSizeError(
            f"the YAML document is more than {MAX_CHARACTERS:,} characters long (read at most "
            f"{MAX_CHARACTERS // 1_000_000} MB)"
        )
    try:
        return yaml.load(stream, Loader=BoundedSafeLoader)
    except RecursionError:
        raise YAMLNestingError("the YAML document is nested too deeply to read") from None


def safe_dump(data, stream=None, **options):
    """`yaml.safe_dump` that never writes an alias: each value is written where it is used."""
    return yaml.dump(data, stream, Dumper=NoAliasSafeDumper, **options)

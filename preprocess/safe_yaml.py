"""YAML read from users (ensemble files and their calibration blocks, configs, protocols, option
values) with a cap on its size once its aliases are expanded, and written without aliases.

A YAML alias (`*name`) repeats the node its anchor (`&name`) names: nine levels of nine aliases
each in a 1.2 KB file make hundreds of millions of values (PyYAML shares them, but whatever walks
or writes the document meets each one: 8 GB, then a MemoryError traceback), the "billion laughs".
`safe_load` counts every node as the document will be seen, each alias as the whole node it
repeats, while the document is composed, and refuses one over MAX_NODES (or an alias inside the
node it names, which never ends) with a one-line YAMLError before anything is built. Aliases that
stay small load as before: PyYAML's own safe_dump writes one wherever an object appears twice. A
document nested too deeply for the parser's recursion is a YAMLError too, not a RecursionError.
`safe_dump` writes shared objects out in full.
"""

from __future__ import annotations

import yaml

MAX_NODES = 1_000_000  # values, keys and collections of a document, aliases expanded


class YAMLSizeError(yaml.YAMLError):
    """A document too large once its aliases are expanded, or one that names itself (one line)."""


class YAMLNestingError(yaml.YAMLError):
    """A YAML document nested deeper than the parser can follow."""


class BoundedSafeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, counting each node as expanded (an alias as all of the node it names)
    and refusing a document of more than MAX_NODES, or a node that contains an alias of itself."""

    def __init__(self, stream):
        super().__init__(stream)
        self.expanded_sizes: dict[int, int] = {}  # id(node) -> its nodes, aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            named = self.anchors.get(event.anchor)
            if named is not None and id(named) not in self.expanded_sizes:
                raise YAMLSizeError(
                    f"the YAML alias *{event.anchor} at line {event.start_mark.line + 1} is inside the node it names: "
                    "a value that never ends"
                )
            return super().compose_node(parent, index)  # counted as the node it names, where that is used
        node = super().compose_node(parent, index)
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self.expanded_sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self.expanded_sizes[id(key)] + self.expanded_sizes[id(value)] for key, value in node.value)
        if size > MAX_NODES:
            raise YAMLSizeError(
                f"the YAML document would hold more than {MAX_NODES:,} values once its aliases are expanded "
                f"(at line {node.start_mark.line + 1})"
            )
        self.expanded_sizes[id(node)] = size
        return node


class NoAliasSafeDumper(yaml.SafeDumper):
    """PyYAML's SafeDumper, writing an object met twice out again instead of as an alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def safe_load(stream):
    """`yaml.safe_load` with a cap on the document's size, aliases expanded: a one-line YAMLError
    for a document over MAX_NODES, an alias of a node inside itself, or nesting too deep."""
    try:
        return yaml.load(stream, Loader=BoundedSafeLoader)
    except RecursionError:
        raise YAMLNestingError("the YAML document is nested too deeply to read") from None


def safe_dump(data, stream=None, **options):
    """`yaml.safe_dump` that never writes an alias: each value is written where it is used."""
    return yaml.dump(data, stream, Dumper=NoAliasSafeDumper, **options)

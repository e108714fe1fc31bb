"""The fast first parse of recipients.yaml: libyaml's event stream made straight into plain
Python values, with YAML 1.2 core-schema resolution of plain scalars.

Contract: :func:`fast_tree` returns the values, or None whenever only the careful parser
(ruamel.yaml's round trip, in ``campaign.registry``) is exactly right: anchors, aliases
and tags, a duplicate or merge key, a number or time in an unusual form, more than one
document, or no libyaml. It never raises. tests/test_registry_scale.py checks that it
agrees with the careful parser over the corpus, or steps aside.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any


class _Unusual(Exception):
    """The fast parser met something only the careful parser treats exactly right."""


_SIMPLE_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Plain scalars ruamel.yaml would read as a number or a time in any other form (leading
# zeros, underscores, octal, hex, floats, timestamps, .inf/.nan) take the careful path;
# "09:00" or "+7 495" stay text in YAML 1.2 and here.
_UNUSUAL = re.compile(
    r"^([-+]?([0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.[0-9_]+([eE][-+]?[0-9]+)?)"
    r"|0o[0-7_]+|0x[0-9a-fA-F_]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?)$"
)


_PLAIN_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_PLAIN_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def _libyaml() -> Any:
    """PyYAML's libyaml parser class, or None without libyaml."""
    import yaml

    return yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else None


_PLAIN_SPECIAL = re.compile(r"^([-+.0-9~]|null$|Null$|NULL$|true$|True$|TRUE$|false$|False$|FALSE$)")
"""Where a plain scalar may be anything but text (every other one is text as it stands)."""


def _plain_scalar(value: str) -> Any:
    """A plain (unquoted) scalar as YAML 1.2's core schema reads it; raises _Unusual where
    only the careful parser is exactly right."""
    if value and not _PLAIN_SPECIAL.match(value):
        return value
    if _PLAIN_NULL.match(value):
        return None
    if value in _PLAIN_BOOL:
        return _PLAIN_BOOL[value]
    if _SIMPLE_INT.match(value):
        return int(value)
    if _DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _Unusual(value) from None
    if _UNUSUAL.match(value):
        raise _Unusual(value)
    return value


def _from_events(parser: Any) -> Any:
    """The document's value from libyaml's event stream, as plain Python values. Built
    straight from the events, without PyYAML's node tree: a fifth of the time, and memory
    for the values only (the tree of a 10,000-institution registry took 90 MB)."""
    from yaml.events import MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent

    get, check = parser.get_event, parser.check_event

    def value() -> Any:
        event = get()
        kind = type(event)
        if event.anchor is not None or getattr(event, "tag", None) is not None:
            raise _Unusual("an anchor, an alias or a tag")
        if kind is ScalarEvent:
            return event.value if event.style else _plain_scalar(event.value)
        if kind is SequenceStartEvent:
            items = []
            while not check(SequenceEndEvent):
                items.append(value())
            get()
            return items
        if kind is MappingStartEvent:
            mapping: dict[Any, Any] = {}
            while not check(MappingEndEvent):
                key = value()
                if not isinstance(key, str | int | bool) or key == "<<" or key in mapping:
                    raise _Unusual("a duplicate, merge or complex key")
                mapping[key] = value()
            get()
            if len(set(map(repr, mapping))) != len(mapping):
                raise _Unusual("keys that are equal as values")  # 1 and True
            return mapping
        raise _Unusual(kind.__name__)

    return value()


_LOADER: Any = False


def fast_tree(text: str) -> Any:
    """The registry as plain Python values through libyaml, or None when the fast path
    does not apply (see the module docstring). Never raises."""
    global _LOADER
    if re.search(r"(^|[\s\[{,:-])[&*!]", text):
        return None  # anchors, aliases and tags: the careful path
    if _LOADER is False:
        try:
            _LOADER = _libyaml()
        except ImportError:
            _LOADER = None
    if _LOADER is None:
        return None
    import yaml
    import yaml.events as ev

    parser = _LOADER(text.lstrip("\ufeff"))
    try:
        parser.get_event()  # the stream's start
        if parser.check_event(ev.StreamEndEvent):
            return None  # an empty file: the careful path says so
        parser.get_event()  # the document's start
        value = _from_events(parser)
        parser.get_event()  # the document's end
        if not parser.check_event(ev.StreamEndEvent):
            return None  # more than one document
        return value
    except (_Unusual, yaml.YAMLError, ValueError, TypeError, RecursionError):
        return None
    finally:
        parser.dispose()

"""YAML loading that remembers where every key and value came from, so errors can name a line."""

from __future__ import annotations

from dataclasses import dataclass, field
import re
from typing import Any

import yaml

from dstack_iac.config.errors import ConfigError, ConfigIssue

Path = tuple  # a path into the loaded data: ("resources", "gpu") or ("commands", 1)


@dataclass
class YamlSource:
    file: str
    data: Any
    # 1-based (line, column) of each value, and of each mapping key, by data path.
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path, key: bool = False) -> tuple[int | None, int | None]:
        """Where `path` is written: its key when asked for, else its value, else its nearest parent."""
        if key and tuple(path) in self.keys:
            return self.keys[tuple(path)]
        for depth in range(len(path), -1, -1):
            if tuple(path[:depth]) in self.values:
                return self.values[tuple(path[:depth])]
        return None, None


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers: `3000:50` is a port mapping, not 180050."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o?[0-7_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


MAX_CONFIGURATION_BYTES = 1024 * 1024


def read_text_file(path, display: str) -> str:
    """The file's text; a file that is not UTF-8 text (or absurdly large) is an error naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(display, None, None, "", f"cannot be read: {exc.strerror}")]) from None
    if len(data) > MAX_CONFIGURATION_BYTES:
        raise ConfigError([ConfigIssue(display, None, None, "",
                                       f"is {len(data)} bytes: a configuration is at most {MAX_CONFIGURATION_BYTES}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(display, line, None, "",
                                       f"is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}): "
                                       "a configuration must be a YAML text file")]) from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise ConfigError([ConfigIssue(display, line, None, "", "contains a NUL byte: not a YAML text file")])
    return text


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


MAX_VALUES = 20_000  # a configuration is a page of YAML: aliases must not expand it without bound
MAX_DEPTH = 64


class _TooLarge(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.node = node


def load_yaml(text: str, file: str) -> YamlSource:
    """Parse YAML text into plain data plus positions; duplicate keys, syntax errors and
    documents that expand without bound (aliases of aliases) are ConfigErrors."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:
        raise ConfigError([ConfigIssue(file, None, None, "", f"YAML nested too deeply (more than {MAX_DEPTH} levels "
                                                             "are never a configuration)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            [ConfigIssue(file, line, column, "", f"YAML syntax error: {problem} (check indentation and quoting)")]
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - yaml raises marked errors for text input
        raise ConfigError([ConfigIssue(file, None, None, "", f"YAML error: {exc}")]) from None
    source = YamlSource(file=file, data=None)
    issues: list[ConfigIssue] = []
    if node is not None:
        constructor = _Loader(text)
        try:
            source.data = _build(node, (), source, constructor, issues, [0])
        except _TooLarge as exc:
            raise ConfigError([ConfigIssue(file, *_mark(exc.node), "", str(exc))]) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise ConfigError(
                [ConfigIssue(file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, "",
                             f"YAML error: {exc.problem}")]
            ) from None
        finally:
            constructor.dispose()
    if issues:
        raise ConfigError(issues)
    return source


def _build(node: yaml.Node, path: Path, source: YamlSource, constructor: yaml.SafeLoader, issues,
           count: list[int]) -> Any:
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise _TooLarge(f"YAML expands to more than {MAX_VALUES} values (aliases of aliases?): not a configuration",
                        node)
    if len(path) > MAX_DEPTH:
        raise _TooLarge(f"YAML nested more than {MAX_DEPTH} levels deep: not a configuration", node)
    source.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(source.file, *_mark(key_node), dotted(path), "a key must be a plain string"))
                continue
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                issues.append(ConfigIssue(source.file, *_mark(key_node), dotted(path), "a key must be a plain string"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                line, column = _mark(key_node)
                issues.append(
                    ConfigIssue(source.file, line, column, dotted(path + (key,)),
                                f"duplicate key {key!r} (first given on line {source.keys[path + (key,)][0]})")
                )
                continue
            source.keys[path + (key,)] = _mark(key_node)
            result[key] = _build(value_node, path + (key,), source, constructor, issues, count)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (index,), source, constructor, issues, count)
                for index, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def dotted(path: Path) -> str:
    """("resources", "gpu") -> "resources.gpu"; ("commands", 1) -> "commands[1]"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out

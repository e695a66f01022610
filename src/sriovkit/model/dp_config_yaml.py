"""The device plugin config's YAML form: the same document as `config.json`, in YAML (pure).

Same keys, same model, same validation (`dp_config.config_from_obj`), so an error names the
entry and field exactly as for the JSON form and upstream's documentation of each key applies
unchanged. What YAML adds is comments, no quoting, and block lists. What it must not add is
YAML 1.1's implicit typing, which would silently change what a selector means:

- `vendors: [8086]` would be the number 8086 and `devices: [0010]` the octal number 8, and
  `drivers: [on]` the boolean true. Here every plain scalar is a string except `true`/`false`
  (any case PyYAML knows: `True`, `FALSE`) and `null`/`~`/empty: the ids stay the ids, and
  `isRdma: yes` is refused by the validator instead of read as true;
- a key given twice in one mapping would silently keep the last; here it is refused, with its
  line;
- a mapping key that is not a string (`? [a]`, a quoted-less `null:`) has no JSON equivalent;
  refused.

PyYAML is imported only here, and only when a YAML file is read: the CNI shim and the CLI's
other commands never load it.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from sriovkit.errors import InvalidInput

if TYPE_CHECKING:
    import yaml

ConfigForm = Literal["json", "yaml"]
"""Which decoder reads a config file."""

YAML_SUFFIXES = (".yaml", ".yml")

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TRUE_FALSE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def config_form(name: str, text: str | bytes) -> ConfigForm:
    """`yaml` for a `.yaml`/`.yml` file, `json` for a `.json` one; any other name (a ConfigMap
    key such as `config`) by its content: JSON when it starts with `{` or `[`, else YAML."""
    suffix = PurePath(name).suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix == ".json":
        return "json"
    head = text.lstrip()[:1] if isinstance(text, str) else text.lstrip()[:1].decode("latin-1")
    return "json" if head in ("{", "[", "\ufeff") else "yaml"


def _loader_class() -> type[yaml.SafeLoader]:
    import yaml  # noqa: PLC0415 - only when a YAML file is read

    class StringsLoader(yaml.SafeLoader):
        """SafeLoader whose plain scalars are strings but for true/false and null, that refuses
        duplicate and non-string keys (see the module docstring)."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[str] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str):
                    raise yaml.constructor.ConstructorError(
                        None, None, f"mapping key {key!r} is not a string", key_node.start_mark
                    )
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # Only null and the two booleans are resolved implicitly; ints, floats, YAML 1.1's
    # yes/no/on/off, timestamps and merge keys stay plain strings.
    resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, pairs in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(tag, rx) for tag, rx in pairs if tag == _NULL]
        if kept:
            resolvers[first] = kept
    StringsLoader.yaml_implicit_resolvers = resolvers
    StringsLoader.add_implicit_resolver(_BOOL, _TRUE_FALSE, list("tTfF"))
    return StringsLoader


def load_yaml(text: str | bytes) -> Any:
    """One YAML document as plain data (dicts, lists, strings, booleans, None), or
    `InvalidInput("config", ...)` naming the line and column of the problem."""
    import yaml  # noqa: PLC0415 - only when a YAML file is read

    try:
        return yaml.load(text, Loader=_loader_class())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # PyYAML splits its message: "expected a single document in the stream" (context),
        # "but found another document" (problem).
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed"
        raise InvalidInput("config", f"not valid YAML: {problem}{where}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput("config", f"not valid YAML: {exc}") from None


__all__ = ["YAML_SUFFIXES", "ConfigForm", "config_form", "load_yaml"]

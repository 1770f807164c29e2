"""EventBridge event patterns and target input shaping, for the local event bus.

:func:`matches` follows EventBridge's content-filtering rules:

- a pattern is an object; every key in it must match (AND), ``"$or": [pattern, ...]`` matches when
  any alternative does; nested objects match nested event objects;
- a leaf is an array of matchers, any of which may match (OR); when the event value is an array,
  the field matches when any element does;
- matchers: exact strings, numbers (numeric equality: 300 matches 3.0e2), booleans and ``null``;
  ``{"prefix": ...}``, ``{"suffix": ...}`` (both also as ``{"equals-ignore-case": ...}``),
  ``{"equals-ignore-case": ...}``, ``{"wildcard": "a*b"}``, ``{"anything-but": value | [values] |
  {"prefix" | "suffix" | "equals-ignore-case" | "wildcard": ...}}``, ``{"numeric": [">", 0, "<=", 5]}``,
  ``{"exists": true | false}`` and ``{"cidr": "10.0.0.0/24"}``;
- a missing field matches only ``{"exists": false}`` (``anything-but`` needs the field present).

:func:`validate_pattern` rejects what EventBridge would reject and the operators not listed here,
so a rule the local bus cannot evaluate fails loudly at start-up instead of never matching.

:func:`target_input` applies a target's ``Input``, ``InputPath`` or ``InputTransformer``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

__all__ = ["json_path", "matches", "target_input", "validate_pattern"]

_MISSING = object()
_NUMERIC_OPS = {"<", "<=", "=", ">=", ">"}
_STRING_OPS = ("prefix", "suffix", "equals-ignore-case", "wildcard")


# ---------------------------------------------------------------------------------- validation
def validate_pattern(pattern: Any, where: str = "pattern") -> None:
    """Raise ValueError when ``pattern`` is not an event pattern the local bus can evaluate."""
    if not isinstance(pattern, dict) or not pattern:
        raise ValueError(f"{where}: an event pattern must be a non-empty JSON object")
    for key, value in pattern.items():
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise ValueError(f"{where}.$or: needs a list of at least two patterns")
            for i, alternative in enumerate(value):
                validate_pattern(alternative, f"{where}.$or[{i}]")
        elif isinstance(value, dict):
            validate_pattern(value, f"{where}.{key}")
        elif isinstance(value, list):
            if not value:
                raise ValueError(f"{where}.{key}: an empty list matches nothing")
            for matcher in value:
                _validate_matcher(matcher, f"{where}.{key}")
        else:
            raise ValueError(f"{where}.{key}: a leaf must be a list of values, got {value!r}")


def _validate_matcher(matcher: Any, where: str) -> None:
    if matcher is None or isinstance(matcher, (str, bool, int, float)):
        return
    if not isinstance(matcher, dict) or len(matcher) != 1:
        raise ValueError(f"{where}: unsupported matcher {matcher!r}")
    ((op, arg),) = matcher.items()
    if op in ("prefix", "suffix"):
        if not (isinstance(arg, str) or _is_ignore_case(arg)):
            raise ValueError(f"{where}: {op} takes a string or {{'equals-ignore-case': string}}")
    elif op in ("equals-ignore-case", "wildcard"):
        if not isinstance(arg, str):
            raise ValueError(f"{where}: {op} takes a string")
    elif op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"{where}: exists takes true or false")
    elif op == "numeric":
        _numeric_conditions(arg, where)
    elif op == "cidr":
        try:
            ipaddress.ip_network(arg, strict=False)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: cidr {arg!r} is not a network") from None
    elif op == "anything-but":
        if isinstance(arg, dict):
            if len(arg) != 1 or next(iter(arg)) not in _STRING_OPS:
                raise ValueError(f"{where}: anything-but takes values or one of {_STRING_OPS}")
            _validate_matcher(arg, where)
        elif isinstance(arg, list):
            if not arg or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in arg):
                raise ValueError(f"{where}: anything-but takes a non-empty list of strings or numbers")
        elif not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
            raise ValueError(f"{where}: anything-but takes a string, a number or a list of them")
    else:
        raise ValueError(f"{where}: operator {op!r} is not supported by the local event bus")


def _is_ignore_case(arg: Any) -> bool:
    return isinstance(arg, dict) and set(arg) == {"equals-ignore-case"} and isinstance(arg["equals-ignore-case"], str)


def _numeric_conditions(arg: Any, where: str = "numeric") -> list[tuple[str, float]]:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise ValueError(f"{where}: numeric takes [op, number] or [op, number, op, number]")
    conditions = []
    for op, number in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS or not isinstance(number, (int, float)) or isinstance(number, bool):
            raise ValueError(f"{where}: bad numeric condition {op!r} {number!r}")
        conditions.append((op, float(number)))
    return conditions


# ------------------------------------------------------------------------------------ matching
def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` (a dict) matches the event ``pattern`` (see the module docstring)."""
    for key, sub in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in sub):
                return False
            continue
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(sub, dict):
            if not _match_object(sub, value):
                return False
        elif not _match_leaf(sub, value):
            return False
    return True


def _match_object(pattern: dict[str, Any], value: Any) -> bool:
    if isinstance(value, list):
        return any(_match_object(pattern, item) for item in value) if value else matches(pattern, {})
    return matches(pattern, value if isinstance(value, dict) else {})


def _match_leaf(matchers: list[Any], value: Any) -> bool:
    if value is _MISSING:
        return any(isinstance(m, dict) and m.get("exists") is False for m in matchers)
    values = value if isinstance(value, list) else [value]
    for matcher in matchers:
        if isinstance(matcher, dict) and "exists" in matcher:
            if matcher["exists"] and not isinstance(value, dict):
                return True
            continue
        if isinstance(matcher, dict) and "anything-but" in matcher:
            # Present, and no element is one of the excluded values.
            if values and not any(_match_value(_excluded(matcher["anything-but"]), v) for v in values):
                return True
            continue
        if any(_match_value(matcher, v) for v in values):
            return True
    return False


def _excluded(arg: Any) -> Any:
    """anything-but's argument as one matcher (a list is any of its values)."""
    return {"$any": arg} if isinstance(arg, list) else arg


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _match_value(matcher: Any, value: Any) -> bool:
    """One (non-exists, non-anything-but) matcher against one scalar event value."""
    if isinstance(matcher, dict):
        ((op, arg),) = matcher.items()
        if op == "$any":
            return any(_match_value(m, value) for m in arg)
        if op in ("prefix", "suffix"):
            if not isinstance(value, str):
                return False
            if isinstance(arg, dict):
                text, value = arg["equals-ignore-case"].lower(), value.lower()
            else:
                text = arg
            return value.startswith(text) if op == "prefix" else value.endswith(text)
        if op == "equals-ignore-case":
            return isinstance(value, str) and value.lower() == arg.lower()
        if op == "wildcard":
            return isinstance(value, str) and re.fullmatch(_wildcard_regex(arg), value, re.DOTALL) is not None
        if op == "numeric":
            return _is_number(value) and all(_compare(value, o, n) for o, n in _numeric_conditions(arg))
        if op == "cidr":
            try:
                return isinstance(value, str) and ipaddress.ip_address(value) in ipaddress.ip_network(arg, strict=False)
            except ValueError:
                return False
        return False
    if matcher is None:
        return value is None
    if isinstance(matcher, bool):
        return isinstance(value, bool) and value is matcher
    if _is_number(matcher):
        return _is_number(value) and float(value) == float(matcher)
    return isinstance(value, str) and value == matcher


def _compare(value: float, op: str, number: float) -> bool:
    return {
        "<": value < number,
        "<=": value <= number,
        "=": value == number,
        ">=": value >= number,
        ">": value > number,
    }[op]


def _wildcard_regex(pattern: str) -> str:
    parts, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        i += 1
    return "".join(parts)


# -------------------------------------------------------------------------------- target input
_PATH_TOKEN = re.compile(r"\.([A-Za-z0-9_$@-]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def json_path(document: Any, path: str) -> Any:
    """The value at a simple JSONPath (``$``, ``$.a.b``, ``$.a[0]``, ``$['a-b']``); None when absent."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath {path!r} must start with $")
    position, value = 1, document
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        key, index, quoted, double_quoted = match.groups()
        name = key if key is not None else quoted if quoted is not None else double_quoted
        if index is not None:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
        else:
            value = value.get(name) if isinstance(value, dict) else None
        if value is None:
            return None
        position = match.end()
    return value


def target_input(
    event: dict[str, Any],
    *,
    input: str | None = None,
    input_path: str | None = None,
    input_transformer: dict[str, Any] | None = None,
    rule_name: str = "",
    rule_arn: str = "",
) -> Any:
    """What a target receives for ``event``: the JSON value of ``Input``, the ``InputPath`` selection,
    the ``InputTransformer`` result (parsed when it is JSON, else the text), or the event itself."""
    if input is not None:
        return json.loads(input)
    if input_path is not None:
        return json_path(event, input_path)
    if input_transformer is None:
        return event
    values: dict[str, Any] = {
        name: json_path(event, path) for name, path in (input_transformer.get("InputPathsMap") or {}).items()
    }
    template = str(input_transformer.get("InputTemplate") or "")
    reserved = {
        "aws.events.event": json.dumps(event),
        "aws.events.event.json": json.dumps(event),
        "aws.events.rule-name": rule_name,
        "aws.events.rule-arn": rule_arn,
        "aws.events.event.ingestion-time": event.get("time", ""),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            value = values[name]
            # A string goes in as its text (so "<x>" in quotes stays a JSON string), anything else as JSON.
            return value if isinstance(value, str) else json.dumps(value)
        if name in reserved:
            return str(reserved[name])
        return match.group(0)

    text = re.sub(r"<([A-Za-z0-9_.\-]+)>", replace, template)
    try:
        return json.loads(text)
    except ValueError:
        return text

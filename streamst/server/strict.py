"""Strict JSON at the edge of the service, for every websocket endpoint.

In: :func:`loads` accepts only what a well-behaved client sends and turns everything else
into a :class:`~streamst.server.protocol.ProtocolError` with a documented code:

* not JSON, ``NaN`` / ``Infinity`` literals, nesting deeper than ``max_depth``, lone
  surrogates (``"\\ud800"``) in a string or a key: ``malformed_json``;
* integers longer than ``MAX_INT_DIGITS`` digits, floats that overflow to infinity:
  ``bad_value``.

A value that passes is plain JSON data (dict / list / str / int / float / bool / None),
finite, at most ``max_depth`` deep and encodable as UTF-8, so nothing downstream (schema
validation, echoing it back, ``dataclasses.asdict``) can overflow, recurse without bound
or fail to encode.

Out: :func:`dumps` never writes ``NaN`` / ``Infinity`` (``allow_nan=False``; a non-finite
float becomes ``null``, logged once as a bug) and always returns valid UTF-8 bytes.

:func:`validate` runs a pydantic model over a parsed message and maps its errors to the
protocol's codes: an endpoint passes a table ``field -> code`` (first element of the
error location); ``extra_forbidden`` is ``unknown_field``; everything else ``bad_value``.
The native ``/ws`` protocol, ``/funasr`` and any later endpoint share these functions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streamst.server.codes import ProtocolError

log = logging.getLogger(__name__)

MAX_DEPTH = 8  # nesting of objects / arrays in one client message
MAX_INT_DIGITS = 20  # longer integer literals are refused before Python converts them
MAX_ECHO = 80  # characters of a client value quoted back in an error message


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError("bad_value", f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError("bad_value", f"number {clip(text)} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise ProtocolError("malformed_json", f"{name} is not valid JSON (numbers must be finite)")


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one client text frame strictly (see the module docstring)."""
    try:
        obj = json.loads(data, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError("malformed_json", f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ProtocolError("malformed_json", f"text frame is not valid JSON: {clip(str(e))}") from None
    check_tree(obj, max_depth)
    return obj


def check_tree(obj: Any, max_depth: int = MAX_DEPTH) -> None:
    """Depth and strings of parsed JSON, iteratively (no recursion on client data)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _check_str(node)
        elif isinstance(node, (dict, list)):
            if depth > max_depth:
                raise ProtocolError("malformed_json", f"JSON nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key, value in node.items():
                    _check_str(key)
                    stack.append((value, depth + 1))
            else:
                stack.extend((value, depth + 1) for value in node)


def _check_str(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("malformed_json", "string with a lone surrogate (not valid Unicode)") from None


def short(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr`` of a client value for an error message, cut to ``limit`` characters."""
    return clip(repr(value), limit)


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """Text for an error message: valid UTF-8, at most ``limit`` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dumps(obj: Any) -> bytes:
    """Server message -> UTF-8 JSON bytes; never NaN / Infinity, never invalid UTF-8."""
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError:
        log.warning("non-finite number in an outgoing message (sent as null): %s", short(obj, 200))
        text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate got into server data: escape it
        log.warning("lone surrogate in an outgoing message (escaped)")
        return json.dumps(_finite(obj), ensure_ascii=True, allow_nan=False).encode("ascii")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], obj: Mapping[str, Any], where: str, codes: Mapping[str, str] | None = None) -> M:
    """``model.model_validate(obj)`` with its first error as a :class:`ProtocolError`.

    ``codes`` maps a field (dotted path, e.g. ``policy.name``; the longest listed prefix of
    the error's location wins) to the error code for problems with it (default
    ``bad_value``); unknown fields are ``unknown_field`` wherever they are."""
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        extra = [err for err in errors if err["type"] == "extra_forbidden"]
        if extra:
            names = ", ".join(clip(".".join(map(str, err["loc"]))) for err in extra)
            raise ProtocolError("unknown_field", f"unknown field(s) in {where}: {names} "
                                                 f"(allowed: {', '.join(_allowed(model, extra[0]['loc']))})") from None
        err = errors[0]
        loc = [str(p) for p in err["loc"]]
        table = codes or {}
        code = next((table[k] for k in (".".join(loc[:i]) for i in range(len(loc), 0, -1)) if k in table), "bad_value")
        got = f" (got {short(err['input'])})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise ProtocolError(code, f"{where}.{'.'.join(loc)}: {err['msg']}{got}") from None


def _allowed(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model where an unknown field was found."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        nested = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is None:
            break
        current = nested
    return sorted(getattr(current, "model_fields", {}))

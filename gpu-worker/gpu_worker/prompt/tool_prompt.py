"""Tool definitions as system-prompt text (the template has none), byte-identical to the gateway's:
serialized as JavaScript's JSON.stringify writes them, since the gateway counts tokens of that text.
"""

import json
import math
import re
from decimal import Decimal

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

TOOLS_HEADER = (
    "## Tools\n"
    "You can call the following functions. Each function is described by one JSON object per line."
)


def render_tools_prompt(tools: list) -> str:
    return TOOLS_HEADER + "\n" + "\n".join(js_json_dumps(tool) for tool in tools)


def js_json_dumps(value) -> str:
    """json.dumps with JSON.stringify's output: compact, keys in order, non-ASCII raw, JS numbers."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(lambda m: "\\u%04x" % ord(m.group()), json.dumps(value, ensure_ascii=False))
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(js_json_dumps(str(k)) + ":" + js_json_dumps(value[k]) for k in _js_key_order(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(js_json_dumps(v) for v in value) + "]"
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _js_key_order(obj: dict) -> list:
    """JS objects list array-index keys ("0".."4294967294") first, ascending, then the rest in order."""
    index_keys = [k for k in obj if _is_array_index(k)]
    return sorted(index_keys, key=int) + [k for k in obj if not _is_array_index(k)]


def _is_array_index(key) -> bool:
    return isinstance(key, str) and key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def js_number(value) -> str:
    """Number.prototype.toString for a JSON number (a parsed JSON number is a double in JS)."""
    x = float(value)
    if math.isnan(x) or math.isinf(x):
        return "null"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    # repr gives the shortest decimal digits that round-trip, as JS does: x = digits * 10**exponent
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    sign = "-" if x < 0 else ""
    k = len(digits)
    n = exponent + k  # position of the decimal point relative to the digits
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return sign + mantissa + "e" + ("+" if e >= 0 else "-") + str(abs(e))

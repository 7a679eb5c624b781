"""The Jinja2 sandbox templates are compiled in (imported where a template is compiled, so
that a command which compiles none starts without Jinja2: issue 16, goal 7).

The sandbox refuses attribute tricks such as ``{{ ''.__class__ }}``; HTML is autoescaped.
"""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment


class StrictSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, but reaching for an unsafe attribute fails at once, even where the
    default would quietly render nothing: such a template is refused, never sent."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


HTML = StrictSandbox(autoescape=True, undefined=ChainableUndefined)
TEXT = StrictSandbox(autoescape=False, undefined=ChainableUndefined)

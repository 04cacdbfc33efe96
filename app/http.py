"""Response helpers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    """JSON rendered by orjson (datetimes, decimals-as-floats via ``default``, non-str keys)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")

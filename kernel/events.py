"""Events as domain code declares them, and their payloads as the log stores them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel


def encode_payload(data: BaseModel | Mapping[str, Any]) -> bytes:
    if isinstance(data, BaseModel):
        return data.__pydantic_serializer__.to_json(data, by_alias=True)
    return orjson.dumps(data)

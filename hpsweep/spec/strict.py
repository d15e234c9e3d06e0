"""The base of every spec model: frozen, no unknown keys, and a 'did you mean' for typos."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _passthrough(error: Any) -> InitErrorDetails:
    """Re-wrap an already-formatted error so it survives being raised again from an outer model."""
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], error["msg"], error.get("ctx")),
        loc=error["loc"],
        input=error["input"],
    )


class StrictModel(BaseModel):
    """Unknown keys are errors that name the closest known key; every other problem is kept too."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: how an unknown key is explained; branch models override it ("adam does not take momentum")
    _owner: ClassVar[str] = ""

    @classmethod
    def known_keys(cls) -> list[str]:
        return [field.alias or name for name, field in cls.model_fields.items()]

    @classmethod
    def _unknown_key_message(cls, key: str) -> str:
        known = [k for k in cls.known_keys() if k != "name"] if cls._owner else cls.known_keys()
        if cls._owner:
            return f"{cls._owner} does not take {key!r} (it takes: {', '.join(known) or 'nothing'})"
        return f"unknown key {key!r}{did_you_mean(key, known)}"

    @model_validator(mode="wrap")
    @classmethod
    def _explain_unknown_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            details: list[InitErrorDetails] = []
            for error in exc.errors():
                loc = error["loc"]
                if error["type"] == "extra_forbidden" and len(loc) == 1:
                    message = cls._unknown_key_message(str(loc[0]))
                    details.append(
                        InitErrorDetails(
                            type=PydanticCustomError("unknown_key", message), loc=loc, input=error["input"]
                        )
                    )
                else:
                    details.append(_passthrough(error))
            raise ValidationError.from_exception_data(exc.title, details) from None

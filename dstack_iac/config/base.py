"""What every configuration model shares: unknown keys are refused, defaults are validated, and
a validator can point at one item inside the field it checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo


class FieldValueError(ValueError):
    """A ValueError about one item inside the field being validated (e.g. `env[2]`)."""

    def __init__(self, subpath: tuple, message: str):
        super().__init__(message)
        self.subpath = subpath


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True)


def validation_context(info: ValidationInfo) -> dict:
    """What the loader hands the validators: `run_args`, `caller_env`, `config_dir`."""
    return info.context or {}

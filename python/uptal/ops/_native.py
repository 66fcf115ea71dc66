"""Loading of the compiled modules. Importing uptal never compiles and never fails because a native module is
missing: each loader records why it could not load, and `uptal info` reports it."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class NativeModule:
    name: str
    module: ModuleType | None
    reason: str          # why it is not used ("" when loaded)

    @property
    def loaded(self) -> bool:
        return self.module is not None


def _load(name: str) -> NativeModule:
    if os.environ.get("UPTAL_DISABLE_NATIVE", "") not in ("", "0"):
        return NativeModule(name, None, "disabled by UPTAL_DISABLE_NATIVE")
    try:
        return NativeModule(name, importlib.import_module(f"uptal.{name}"), "")
    except ImportError as error:
        return NativeModule(name, None, f"not importable: {error}")


CPU = _load("_C")
CUDA = _load("_C_cuda")

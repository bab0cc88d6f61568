"""``choo`` has one root exception: every exception class it declares derives from ChooError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import choo
import choo.errors
from choo.errors import ChooError


def choo_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module_info in pkgutil.walk_packages(choo.__path__, "choo."):
        if module_info.name == "choo.__main__":
            continue  # runs the CLI when imported
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("choo."):
                found.add(value)
    return found


def test_every_choo_exception_derives_from_choo_error() -> None:
    found = choo_exceptions()
    names = {e.__name__ for e in found}
    assert {"ConfigError", "DaemonError", "HistoryError", "PlanInvalid", "RunError"} <= names
    assert {e.__name__ for e in found if not issubclass(e, ChooError)} == set()
    # The tree drawn in choo.errors names each of them.
    assert all(name in (choo.errors.__doc__ or "") for name in names)

"""Which attributes of fake objects the code under test touches (module.Class.attribute): any caller outside
tests/ (the fake itself and the tests that drive it are not the code under test)."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent  # tests/: the tests' own look inside the fake is not the code under test
accessed: set[str] = set()


_inside: dict[str, bool] = {}


def _outside(depth: int = 2) -> bool:
    name = sys._getframe(depth).f_code.co_filename
    if name not in _inside:
        _inside[name] = Path(name).resolve().is_relative_to(TESTS)
    return not _inside[name]


def _own(cls, name: str) -> bool:
    """``name`` is defined by a class outside the fake (a subclass the code under test wrote)."""
    return any(name in vars(c) for c in type.mro(cls) if not c.__module__.startswith("spinnaker2"))


class Tracked:
    """Base of every fake class: records outside reads and writes of its attributes."""

    _qualname = ""

    def __getattribute__(self, name):
        if not name.startswith("__") and _outside() and not _own(type(self), name):
            accessed.add(f"{type(self)._surface_name()}.{name}")
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if _outside() and not _own(type(self), name):
            accessed.add(f"{type(self)._surface_name()}.{name}")
        object.__setattr__(self, name, value)

    @classmethod
    def _surface_name(cls) -> str:
        for c in type.mro(cls):
            if c.__module__.startswith("spinnaker2.") and c is not Tracked:
                return f"{c.__module__.removeprefix('spinnaker2.')}.{c.__name__}"
        return cls.__name__


class TrackedDict(dict):
    """sim_cfg: a dict whose key reads from outside are recorded as sim_cfg.KEY."""

    def __getitem__(self, key):
        if _outside():
            accessed.add(f"sim_cfg.{key}")
        return dict.__getitem__(self, key)

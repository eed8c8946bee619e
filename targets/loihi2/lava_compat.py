"""Make lava-nc 0.10.0 importable on Python 3.11, without touching the installed files.

lava-nc 0.10.0 declares ``Requires-Python <3.11``.  On 3.11 exactly one thing breaks:
``lava/magma/compiler/var_model.py`` declares dataclass fields ``x: ByteEncoder = ByteEncoder()``,
which 3.11 rejects as a mutable default, and every process import reaches that module.  An import
hook rewrites that one declaration to ``field(default_factory=ByteEncoder)`` while the module is
loaded.  A hook rather than a patch of site-packages: it survives ``pip install --force-reinstall``,
needs no write access to the environment, and is a no-op on a Lava that is already fixed.

Lava calls ``multiprocessing.set_start_method('fork')`` when its runtime is imported, which fails
if anything chose a start method before; ``import_lava`` therefore imports the runtime at once.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import multiprocessing
import re
import sys

from egru_deploy.errors import TargetUnavailable

VAR_MODEL = "lava.magma.compiler.var_model"
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)$", re.MULTILINE)
_DATACLASSES_IMPORT = re.compile(r"^from dataclasses import .*$", re.MULTILINE)


def patch_var_model_source(source: str) -> str:
    """The 3.11 fix: each ``x: ByteEncoder = ByteEncoder()`` gets a default factory."""
    patched = _MUTABLE_DEFAULT.sub(r"\1 = _dataclasses.field(default_factory=ByteEncoder)", source)
    if patched == source:
        return source
    # After any ``from __future__`` line, which must stay first.
    return _DATACLASSES_IMPORT.sub("import dataclasses as _dataclasses\n\\g<0>", patched, count=1)


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        # Compiled from the patched source every time: a cached .pyc would hold the unpatched code.
        source = self.get_data(self.path).decode("utf-8")
        return compile(patch_var_model_source(source), self.path, "exec", dont_inherit=True)


class _VarModelFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            spec.loader = _PatchedSourceLoader(fullname, spec.origin)
        return spec


def install_hook() -> None:
    if not any(isinstance(finder, _VarModelFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _VarModelFinder())


def import_lava() -> None:
    """Install the hook and import Lava's runtime; raise TargetUnavailable if that is impossible."""
    install_hook()
    if "lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules:
        method = multiprocessing.get_start_method(allow_none=True)
        if method is not None:
            raise TargetUnavailable(
                f"Lava needs to set the multiprocessing start method but it is already {method!r}; "
                "import egru_deploy.targets.loihi2 before anything uses multiprocessing")
    try:
        import lava.magma.core.run_configs  # noqa: F401  (pulls in the runtime, which sets 'fork')
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    except ImportError as e:
        raise TargetUnavailable(f"Lava is not installed ({e}); run scripts/setup_lava.sh .venv") from None

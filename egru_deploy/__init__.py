"""egru-deploy: deploy trained EGRU networks onto neuromorphic chips (Loihi 2, SpiNNaker2).

The Python API (``egru_deploy.api``, README "Python API"): ``load``, ``inspect``, ``compile``,
``emulate``, ``evaluate``, ``export`` -- the functions the ``egru-deploy`` command line runs.
"""

__version__ = "0.1.0"

# The submodule egru_deploy.compile (the compile pipeline) is imported first: importing a submodule
# sets the package attribute of its name, which must end up being the API function below.
from egru_deploy import compile as _compile_pipeline  # noqa: E402,F401
from egru_deploy.api import compile, emulate, evaluate, export, inspect, load  # noqa: E402,F401,A004

__all__ = ["compile", "emulate", "evaluate", "export", "inspect", "load", "__version__"]

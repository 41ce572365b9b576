"""Loaded by Python at start-up when optimize-queries puts this folder first on PYTHONPATH.

It does two things and nothing else:

1. runs the ``sitecustomize`` that would have run without us (the next one on ``sys.path``), so
   an existing site customisation keeps working;
2. when ``OPTIMIZE_QUERIES_DIR`` is set, loads ``../recorder.py`` (by file path, under a private
   module name, so no module of ours can shadow one of the user's) and arms it.

Any failure here is reported on stderr and never stops the user's program.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _same_dir(entry: str) -> bool:
    try:
        return os.path.abspath(entry or os.getcwd()) == _HERE
    except Exception:
        return False


def _chain_previous_sitecustomize() -> None:
    paths = [p for p in sys.path if not _same_dir(p)]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", paths)
    if spec is None or spec.loader is None or spec.origin == __file__:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module  # `import sitecustomize` elsewhere sees the real one
    spec.loader.exec_module(module)


def _arm_recorder() -> None:
    if not os.environ.get("OPTIMIZE_QUERIES_DIR"):
        return
    path = os.path.join(os.path.dirname(_HERE), "recorder.py")
    spec = importlib.util.spec_from_file_location("optimize_queries_recorder", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["optimize_queries_recorder"] = module
    spec.loader.exec_module(module)
    module.arm()


try:
    _chain_previous_sitecustomize()
except Exception as exc:
    print(f"optimize-queries: the existing sitecustomize raised {type(exc).__name__}: {exc}", file=sys.stderr)
try:
    _arm_recorder()
except Exception as exc:
    print(f"optimize-queries: instrumentation not loaded: {type(exc).__name__}: {exc}", file=sys.stderr)

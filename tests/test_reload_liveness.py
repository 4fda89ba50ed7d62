"""The reload's liveness check and the frozen heap (warm/reload.py, warm/serving.py).

A project layer leaves what the base froze out of its collections, so that a
reload does not walk (and copy, page by page) the libraries' heap. Each case
runs in a fresh interpreter: it freezes and purges modules of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import gc, importlib, os, sys, weakref
sys.path.insert(0, os.getcwd())
from pytest_fastcollect.warm import reload
from pytest_fastcollect.warm.serving import fork_accounted
"""


def run(tmp_path: Path, files: dict[str, str], script: str) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    code = PRELUDE + textwrap.dedent(script)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


REGISTRY = {"registry.py": "ITEMS = []\n"}


def test_a_layer_reload_leaves_the_frozen_heap_frozen(tmp_path: Path) -> None:
    files = {**REGISTRY, "proj.py": "class A:\n    pass\n\ndef f():\n    return A\n"}
    out = run(
        tmp_path,
        files,
        """
        import registry
        gc.collect(); gc.freeze()          # the base
        frozen = gc.get_freeze_count()  # less any frozen object freed meanwhile (caches)
        importlib.import_module("proj")    # the layer (nothing here holds it)
        old = weakref.ref(sys.modules["proj"].A)
        result = reload.reload_modules(["proj"], ["proj"])
        tracked = {id(o) for o in gc.get_objects()}  # what collections look at: not the frozen
        layer_tracked = id(sys.modules["proj"].A) in tracked
        base_tracked = id(registry.ITEMS) in tracked
        print(result.failure, gc.get_freeze_count() > frozen * 0.9, old() is None)
        print(layer_tracked, base_tracked)
        """,
    )
    assert out.split() == ["None", "True", "True", "True", "False"]


def test_a_purged_class_a_frozen_registry_holds_is_found_alive(tmp_path: Path) -> None:
    files = {
        **REGISTRY,
        "proj.py": "import registry\n\nclass A:\n    pass\n\nregistry.ITEMS.append(A)\n",
    }
    out = run(
        tmp_path,
        files,
        """
        import registry
        gc.collect(); gc.freeze()
        importlib.import_module("proj")
        result = reload.reload_modules(["proj"], ["proj"])
        print(result.failure.name, "proj.A" in result.reason)
        """,
    )
    assert out.split() == ["ALIVE", "True"]


def test_a_module_the_base_froze_is_still_collected(tmp_path: Path) -> None:
    # A project module imported before the freeze (a plugin the base loads):
    # only a collection of the whole heap frees its cycles.
    files = {"proj.py": "class A:\n    pass\n\ndef f():\n    return A\n"}
    out = run(
        tmp_path,
        files,
        """
        importlib.import_module("proj")
        gc.collect(); gc.freeze()
        result = reload.reload_modules(["proj"], ["proj"])
        print(result.failure, gc.get_freeze_count())
        """,
    )
    assert out.split() == ["None", "0"]


def test_a_forked_child_freezes_what_it_inherits(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        REGISTRY,
        """
        gc.collect(); gc.freeze()
        import registry
        before = gc.get_freeze_count()
        r, w = os.pipe()
        pid = fork_accounted()
        if pid == 0:
            os.write(w, str(gc.get_freeze_count() > before).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 10).decode(), gc.get_freeze_count() == before)
        """,
    )
    assert out.split() == ["True", "True"]

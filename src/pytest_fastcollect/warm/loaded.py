"""Which of the warm process's modules are project code, wherever they live.

Runs in the warm process (single-threaded). A module counts as project code
(watched, stat-swept, purged and re-imported when it changes) when its real
file is under the rootdir (outside site-packages), or anywhere else that is
neither the standard library nor an installed, non-editable package:

- a package directory inside the project that is a symlink to elsewhere
  (the real path is reported, so the real directory is watched);
- a ``.pth`` path entry (``pip install -e`` of a src layout, setuptools'
  ``editable_mode=compat`` or ``strict``, ``PYTHONPATH``, the ini
  ``pythonpath`` pointing outside);
- a module that setuptools' editable finder (``__editable___*_finder.py``,
  whose ``MAPPING`` names the source directories) resolves outside
  site-packages;
- each portion of a namespace package split across directories.

Everything those installs leave in site-packages (the finder module, the
``.pth`` file, the ``.dist-info`` with ``direct_url.json``) is library code:
a reinstall changes site-packages and replaces the warm process anyway.
The plugin's own modules are left out: the supervisor runs the same code,
so a change to them needs ``--daemon-restart``.
"""

from __future__ import annotations

import os
import sys
import weakref
from types import ModuleType

from pytest_fastcollect.warm.learn import library_dirs

SITE_DIR_NAMES = frozenset({"site-packages", "dist-packages"})
OWN_PACKAGE = "pytest_fastcollect"
# The warm process's own main module, and the alias multiprocessing gives it.
MAIN_NAMES = frozenset({"__main__", "__mp_main__"})


def _in_site_dir(real: str) -> bool:
    # A site directory added by site.addsitedir (a .pth line, a parent
    # environment) is not in site.getsitepackages(), but its name says it.
    return not SITE_DIR_NAMES.isdisjoint(real.split(os.sep))


def is_project_file(name: str, real: str, root_prefix: str, libraries: tuple[str, ...]) -> bool:
    """``real``: the module's file with symlinks resolved; ``root_prefix``: rootdir + sep."""
    if name in MAIN_NAMES:
        return False
    if real.startswith(root_prefix):
        return "site-packages" not in real
    if name == OWN_PACKAGE or name.startswith(OWN_PACKAGE + "."):
        return False
    if real.startswith(libraries) or _in_site_dir(real):
        return False
    # A file that is not there (a zip import, a generated module) cannot be watched.
    return os.path.isfile(real)


# Module name -> (the module, weakly; its file; the real path if project code, else
# None): a module object's verdict does not change, and a reload report walks
# every module (a realpath each is most of its cost on a large heap).
_seen: dict[tuple[str, str], tuple[weakref.ref[ModuleType], str, str | None]] = {}


def project_modules(root: str) -> list[tuple[str, str]]:
    """(module name, real path) of every loaded module that is project code."""
    prefix = root + os.sep
    libraries = library_dirs()  # cached
    found: list[tuple[str, str]] = []
    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or not f:
            continue
        seen = _seen.get((root, name))
        if seen is not None and seen[0]() is mod and seen[1] == f:
            project = seen[2]
        else:
            real = os.path.realpath(f)
            project = real if is_project_file(name, real, prefix, libraries) else None
            try:
                _seen[(root, name)] = (weakref.ref(mod), f, project)
            except TypeError:
                pass  # not weakly referable: not remembered
        if project is not None:
            found.append((name, project))
    return found

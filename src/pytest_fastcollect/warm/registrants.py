"""Which project modules left something of theirs behind in others when imported.

Runs in the project layer, when idle (a few passes over the heap). A module
is a *registrant* when a container (a dict, list, set or deque) that it
does not own holds one of its classes or functions: a plugin registry filled
by a decorator, an ``__init_subclass__`` registry, SQLAlchemy's declarative
registry, Django's app registry. A run that a cold process would run
without importing a registrant must not come from a layer that imported it:
it would see the registration (``supervisor/runs.py`` forks it from the base
process instead).

"Owns" is followed through references: a container is the module's own when
everything that refers to it (up to ``DEPTH`` steps) is the module's
namespace, its classes and functions, or things that are themselves its
own. What cannot be proven the module's own counts as a registration.

An instance of a module's class counts too when a container traced to
another module holds it (``HANDLERS.append(JsonHandler())``); instances
held in ways that cannot be traced do not (a sentinel default in the fields
of countless other objects), nor are they followed at all when the
project's classes have more than ``MAX_INSTANCES`` of them. The instance
does not say who made it: every project module that imports the class's
module and reaches the holder's module counts along with the class's module.

A class is also listed, weakly, in ``__subclasses__()`` of each of its
bases. When the project's source calls ``__subclasses__`` anywhere (plugin
discovery by subclassing), a module whose class has a base from another
project module that does not import it is a registrant too. Without such a
call nobody reads those lists, and every subclass would otherwise count.

Not seen: a library's own ``__subclasses__()`` walk over project classes,
registrations held weakly in any other way, outside the heap (``atexit``),
values that are no project object (a string appended to ``sys.path``), or
state with no reference (a counter incremented at import).
"""

from __future__ import annotations

import collections
import gc
import sys
from collections.abc import Iterable
from types import FrameType, FunctionType, ModuleType

DEPTH = 6  # steps followed back from a holder to find whose it is
SUBCLASS_WALK = b"__subclasses__"
TABLES = (list, dict, set, collections.deque)
MAX_INSTANCES = 500  # instances of project classes followed to their holders


class _Heap:
    """Ownership facts gathered once per scan."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = [name for name in modules if name in sys.modules]
        self._imports: dict[tuple[str, str], bool] = {}
        self._module_tables: dict[str, set[int]] = {}
        self.owner: dict[int, str] = {}  # class/function/namespace id -> module
        self.objects: list[object] = []
        self.module_dicts: dict[int, str] = {}
        for name, mod in list(sys.modules.items()):
            if isinstance(mod, ModuleType):
                self.module_dicts[id(vars(mod))] = name
        for name in modules:
            module = sys.modules.get(name)
            if module is None:
                continue
            for value in list(vars(module).values()):
                if isinstance(value, (type, FunctionType)) and value.__module__ == name:
                    self.owner[id(value)] = name
                    self.objects.append(value)
                    self._own_namespace(value, name)
        self.ignore: set[int] = {id(self.objects)}

    def _own_namespace(self, value: object, module: str) -> None:
        if isinstance(value, type):
            for ref in gc.get_referents(value):
                if isinstance(ref, dict):
                    self.owner[id(ref)] = module
        fdict = getattr(value, "__dict__", None)
        if isinstance(fdict, dict):
            self.owner[id(fdict)] = module

    def mine(self, *containers: object) -> None:
        """Our own bookkeeping holds heap objects too: never count it as a holder."""
        self.ignore.update(id(c) for c in containers)

    def imports(self, importer: str | None, module: str) -> bool:
        """Does ``importer`` import ``module`` (its namespace holds the module or its objects)?"""
        if importer is None:
            return False
        if importer == module:
            return True
        key = (importer, module)
        known = self._imports.get(key)
        if known is None:
            known = self._imports[key] = self._namespace_imports(importer, module)
        return known

    def importers(self, module: str, of_also: list[str]) -> list[str]:
        """Project modules that import ``module`` and reach one of ``of_also``."""
        return [
            other
            for other in self.modules
            if other != module
            and self.imports(other, module)
            and any(self.reaches(other, o) for o in of_also)
        ]

    def _namespace_imports(self, importer: str, module: str) -> bool:
        namespace = vars(sys.modules[importer]) if importer in sys.modules else {}
        parent, _, leaf = module.rpartition(".")
        for key, value in list(namespace.items()):
            if value is sys.modules.get(module):
                if importer == parent and key == leaf:
                    # The import system binds a submodule in its package whoever
                    # imported it: no sign that the package does (its source
                    # edges are in the supervisor's estimate).
                    continue
                return True
            if getattr(value, "__module__", None) == module:
                return True
        return False

    def reaches(self, importer: str, module: str) -> bool:
        """``imports``, or the two share a list, dict, set or deque (``from module
        import REGISTRY``; which of them made it cannot be told: only ever use this
        to suspect more)."""
        if self.imports(importer, module):
            return True
        return not self._tables(importer).isdisjoint(self._tables(module))

    def _tables(self, module: str) -> set[int]:
        found = self._module_tables.get(module)
        if found is None:
            namespace = vars(sys.modules[module]) if module in sys.modules else {}
            found = self._module_tables[module] = {
                id(v)
                for k, v in list(namespace.items())
                if isinstance(v, TABLES) and not k.startswith("__")  # not __builtins__
            }
        return found

    def whose(self, obj: object) -> str | None:
        """The module a namespace, class or function belongs to (None: not decided)."""
        oid = id(obj)
        return self.owner.get(oid) or self.module_dicts.get(oid)

    def referrers(self, targets: list[object]) -> dict[int, list[object]]:
        """target id -> what refers to it, in one pass over the heap."""
        wanted = {id(t) for t in targets}
        self.mine(targets)
        found = gc.get_referrers(*targets)
        self.ignore.add(id(found))
        index: dict[int, list[object]] = {i: [] for i in wanted}
        self.mine(index, *index.values())
        for ref in found:
            if id(ref) in self.ignore or isinstance(ref, FrameType) or _is_args(ref, targets):
                continue
            for referent in gc.get_referents(ref):
                if id(referent) in wanted:
                    index[id(referent)].append(ref)
        return index


def _is_args(ref: object, targets: list[object]) -> bool:
    """The argument tuple of our own ``gc.get_referrers(*targets)`` call refers to all."""
    return (
        isinstance(ref, tuple)
        and len(ref) == len(targets)
        and all(a is b for a, b in zip(ref, targets, strict=True))
    )


def find(modules: dict[str, str], sources: Iterable[str] = ()) -> dict[str, str]:
    """``modules``: project module name -> file. Returns registrant name -> why.

    ``sources``: more project files that may walk ``__subclasses__()`` (test
    files a reload purged from the layer, conftests), besides the modules'.

    Unfreezes the heap (``gc.get_referrers`` does not see frozen objects): call
    it in a throw-away child of the warm process. It does not collect first:
    the layer collected what its warm-up, reloads and re-warms left behind,
    and a collection here would walk (and copy) the whole inherited heap.
    Garbage that still holds a project object makes a false registrant, whose
    runs come from the base: slower, never inexact.
    """
    gc.unfreeze()
    heap = _Heap(modules)
    if not heap.objects:
        return {}
    suspects = _Suspects(heap)
    instances = suspects.holders_of_objects()
    # Each instance costs a comparison per reference in the heap: a few hundred
    # take tens of milliseconds on a mid-sized heap; a project whose classes
    # have more instances (a library's own source tree) is not followed there.
    if 0 < len(instances) <= MAX_INSTANCES:
        suspects.holders_of_instances(instances)
    found = suspects.judge()
    weak = _listed_as_subclasses(heap, modules)
    if weak and walks_subclasses([*modules.values(), *sources]):
        for module, why in weak.items():
            found.setdefault(module, why)
    return found


class _Suspects:
    """What holds a project module's class or function, or an instance of its
    class, and is neither the module's own nor an importer's; judged once
    traced back to whose it is."""

    def __init__(self, heap: _Heap) -> None:
        self.heap = heap
        self.modules: list[str] = []
        self.holders: list[object] = []
        self.whats: list[str] = []
        self.instance: list[bool] = []
        heap.mine(self.modules, self.holders, self.whats, self.instance)

    def _add(self, module: str, holder: object, what: str, instance: bool) -> None:
        owner = self.heap.whose(holder)
        if owner is not None and self.heap.imports(owner, module):
            return
        self.modules.append(module)
        self.holders.append(holder)
        self.whats.append(what)
        self.instance.append(instance)

    def holders_of_objects(self) -> list[object]:
        """Suspects among what holds the modules' classes and functions. Returns the
        instances of those classes met on the way: their holders are suspects too."""
        heap = self.heap
        classes = {id(o) for o in heap.objects if isinstance(o, type)}
        instances: list[object] = []
        heap.mine(instances)
        for target_id, refs in heap.referrers(heap.objects).items():
            module = heap.owner[target_id]
            for ref in refs:
                if target_id in classes and id(type(ref)) == target_id:
                    # An instance refers to its class: where the instance is held may register.
                    if not isinstance(ref, (type, ModuleType)):
                        instances.append(ref)
                    continue
                self._add(module, ref, _name_of(heap.objects, target_id), False)
        return instances

    def holders_of_instances(self, instances: list[object]) -> None:
        heap = self.heap
        index = heap.referrers(instances)
        for obj in instances:
            cls = type(obj)
            what = f"a {cls.__qualname__} instance"
            for ref in index[id(obj)]:
                self._add(heap.owner[id(cls)], ref, what, True)

    def judge(self) -> dict[str, str]:
        heap = self.heap
        found: dict[str, str] = {}
        traces = _trace(heap, self.holders)
        for module, ref, what, instance, (traced, resolved) in zip(
            self.modules, self.holders, self.whats, self.instance, traces, strict=True
        ):
            if module in found and not instance:
                continue
            direct = heap.whose(ref)
            owners = traced | ({direct} if direct else set())
            foreign = sorted(o for o in owners if not heap.imports(o, module))
            if not foreign and (instance or (resolved and owners)):
                # An instance is held in countless ways (a sentinel default in
                # another object's fields): only a module's table is a registry.
                continue
            where = f"module {foreign[0]}" if foreign else "something outside the project"
            why = f"{what} is held by a {type(ref).__name__} of {where}"
            found.setdefault(module, why)
            if instance:
                # Whoever made it may be another module that reaches both.
                for other in heap.importers(module, foreign):
                    found.setdefault(other, f"it imports {module}; {why}")
        return found


def _listed_as_subclasses(heap: _Heap, modules: dict[str, str]) -> dict[str, str]:
    """Modules with a class whose base belongs to another project module that does
    not import them: ``Base.__subclasses__()`` lists it there."""
    found: dict[str, str] = {}
    for cls in heap.objects:
        if not isinstance(cls, type):
            continue
        module = heap.owner[id(cls)]
        if module in found:
            continue
        for base in cls.__mro__[1:]:
            owner = getattr(base, "__module__", None)
            if owner in modules and owner != module and not heap.imports(owner, module):
                found[module] = (
                    f"{cls.__qualname__} is listed in {base.__qualname__}.__subclasses__() "
                    f"of module {owner}"
                )
                break
    return found


def walks_subclasses(files: Iterable[str]) -> bool:
    """Does any of these files mention ``__subclasses__`` (a call, a getattr, a comment)?"""
    for path in dict.fromkeys(files):
        try:
            with open(path, "rb") as fh:
                if SUBCLASS_WALK in fh.read():
                    return True
        except OSError:
            continue
    return False


def _trace(heap: _Heap, starts: list[object]) -> list[tuple[set[str], bool]]:
    """For each start: the modules whose namespaces or objects lead to it, and
    whether every path was followed to a module within ``DEPTH`` steps.
    One pass over the heap per step, for all starts at once."""
    results: list[tuple[set[str], bool]] = [(set(), True) for _ in starts]
    tags: dict[int, set[int]] = {}  # object id -> the starts it leads to
    frontier: dict[int, object] = {}
    heap.mine(frontier)
    for i, start in enumerate(starts):
        if heap.whose(start) is None:
            tags.setdefault(id(start), set()).add(i)
            frontier[id(start)] = start
    for _ in range(DEPTH):
        if not frontier:
            return results
        index = heap.referrers(list(frontier.values()))
        following: dict[int, object] = {}
        heap.mine(following)
        for oid, obj in frontier.items():
            _step(heap, index[id(obj)], tags, tags[oid], results, following)
        frontier = following
    for oid in frontier:  # still unresolved after DEPTH steps
        for i in tags[oid]:
            results[i] = (results[i][0], False)
    return results


def _step(
    heap: _Heap,
    refs: list[object],
    tags: dict[int, set[int]],
    starts: set[int],
    results: list[tuple[set[str], bool]],
    following: dict[int, object],
) -> None:
    """One node's referrers: owners found for its starts, the rest followed next."""
    if not refs:  # held from outside the heap: cannot tell whose
        for i in starts:
            results[i] = (results[i][0], False)
    for ref in refs:
        owner = heap.whose(ref)
        if owner is not None:
            for i in starts:
                results[i][0].add(owner)
            continue
        # Paths merge: a node reached again for other starts is followed again.
        new = starts - tags.get(id(ref), set())
        if new:
            tags.setdefault(id(ref), set()).update(new)
            following[id(ref)] = ref


def _name_of(objects: list[object], target_id: int) -> str:
    for obj in objects:
        if id(obj) == target_id:
            return str(getattr(obj, "__qualname__", type(obj).__name__))
    return "an object"

"""Save and restore a whole simulated kernel, safely (``k.save(path)``, ``Kernel.load(path)``).

A save holds everything the simulation is made of: memory regions and their
bytes, the allocators, kmemleak's objects, flags and last scan, the clock,
tasks and stacks, modules, the ground truth, the random state, the kernel
log and the configuration.  A restored kernel continues exactly as the
original would have: the same next scans, reports and verdicts, byte for
byte.

The format (``docs/save-format.md``) is not pickle: it is JSON and raw byte
blobs, and loading it never runs code named by the file.  Classes are
rebuilt only from an allowlist (classes and functions defined in the
``kmemsim`` package, and those of module files loaded with
``k.insmod(path)`` whose contents still match the hash recorded at save
time), with ``cls.__new__`` and attribute assignment, never ``__init__``.

The serializer is generic: it walks the object graph through ``__dict__``,
``__slots__`` and the built-in containers, keeping shared references and
cycles, so new attributes and classes need no code here.  What it cannot
record faithfully (a lambda, a closure, a generator such as a kernel thread
started with :meth:`~kmemsim.Kernel.kthread_run`) is refused at save time
with the attribute path that holds it, and no file is written.

>>> import os, tempfile
>>> from kmemsim import Kernel
>>> k = Kernel(cmdline="slub_debug=P", seed=3)
>>> p = k.kmalloc(64)
>>> k.sleep(10)
>>> path = os.path.join(tempfile.mkdtemp(), "k.kmemsim")
>>> k.save(path)
>>> k2 = Kernel.load(path)
>>> for kern in (k, k2):
...     kern.write("/sys/kernel/debug/kmemleak", "scan")
...     kern.write("/sys/kernel/debug/kmemleak", "scan")
>>> k2.read("/sys/kernel/debug/kmemleak") == k.read("/sys/kernel/debug/kmemleak") != ""
True
>>> k2.dmesg() == k.dmesg()
True
"""

from __future__ import annotations

import array
import collections
import contextlib
import enum
import hashlib
import importlib
import importlib.util
import itertools
import json
import mmap
import os
import random
import re
import secrets
import struct
import sys
import types
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sortedcontainers import SortedDict, SortedKeyList, SortedList, SortedSet

from .errors import KmemsimFormatError, KmemsimTypeError, KmemsimValueError
from .memory import RegionData, zeroed

if TYPE_CHECKING:
    from .kernel import Kernel

#: The ``format`` field of every save's header.
FORMAT_NAME = "kmemsim-save"
#: The format version this code writes; it reads versions ``OLDEST_READABLE`` to this one.
FORMAT_VERSION = 4
#: Version 1 saved each ``kmemleak_object`` as an object of its own; version 2 saves
#: kmemleak's column store, so version 1 files cannot be restored.  Version 3 adds
#: lazily zeroed regions (``anonmap``, only their non-zero pages); version 2 files,
#: whose regions are all ``bytearray``s, load as they are.  Version 4 adds the write
#: and checksum dates, 32-bit kmemleak columns and SLUB's per-slot states; older files
#: load undated, with 64-bit columns, their slabs rebuilt (``upgrade_saved_bookkeeping``).
OLDEST_READABLE = 2
#: ``anonmap`` entries save their non-zero runs of pages of this many bytes.
ANONMAP_PAGE = 4096
#: A header is one JSON line of at most this many bytes.
MAX_HEADER_BYTES = 64 * 1024
#: zlib cannot expand data by more than about 1032 times: a header that says
#: otherwise is lying, and is refused before anything is decompressed.
MAX_ZLIB_RATIO = 1100
#: zlib level: the memory regions are mostly zeros, level 1 already shrinks them ~100x.
ZLIB_LEVEL = 1

_MODULE_NAME = re.compile(r"^kmemsim(\.[a-z][a-z0-9_]*)*$")
_USER_MODULE_PREFIX = "kmemsim_usermod_"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Built-in types a saved value may name (``default_factory=list``, ``dtype=int``).
_BUILTIN_TYPES: dict[str, type] = {t.__name__: t for t in (
    int, float, complex, str, bytes, bytearray, bool, list, tuple, dict, set, frozenset,
    object, type(None))}
_BUILTIN_TYPES["random.Random"] = random.Random
#: numpy bit generators a save may name.
_BIT_GENERATORS: dict[str, type] = {c.__name__: c for c in (
    np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64,
    np.random.MT19937)}
_NP_KINDS = frozenset("biufcmMSU")
#: kmemsim code that reaches outside the simulation (files, the terminal, imports of
#: other files).  A save never names it as a callable: a forged file cannot make the
#: restored kernel call it where the original called a harmless callback.
_OUTSIDE_MODULES = ("kmemsim.persist", "kmemsim.cli", "kmemsim.shell", "kmemsim.demo",
                    "kmemsim.experiments", "kmemsim.plot", "kmemsim.__main__")
_OUTSIDE_NAMES = frozenset({
    "kmemsim.workloads.load_module_file", "kmemsim.workloads.bundled_module",
    "kmemsim.kernel.Kernel.insmod", "kmemsim.kernel.Kernel._resolve_module",
    "kmemsim.kernel.Kernel.save", "kmemsim.kernel.Kernel.load"})


def _reaches_outside(fn: Any) -> bool:
    """True for kmemsim functions that touch files, the terminal or imports (see above)."""
    module, qualname = getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", "")
    return (any(module == m or module.startswith(m + ".") for m in _OUTSIDE_MODULES)
            or f"{module}.{qualname}" in _OUTSIDE_NAMES)


# =========================================================================== header
def _header(payload: bytes, raw_size: int, module_files: list[dict[str, str]]) -> bytes:
    from . import __version__

    head = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kmemsim_version": __version__,
            "compression": "zlib", "payload_bytes": len(payload), "raw_bytes": raw_size,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "module_files": module_files}
    return json.dumps(head, sort_keys=True).encode() + b"\n"


def _read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split and check a save's header; return it and the (verified) compressed payload."""
    nl = data.find(b"\n", 0, MAX_HEADER_BYTES)
    if not data.startswith(b'{"') or nl < 0:
        raise KmemsimFormatError("not a kmemsim save file (no JSON header line)")
    try:
        head = json.loads(data[:nl])
    except (ValueError, UnicodeDecodeError) as exc:
        raise KmemsimFormatError(f"not a kmemsim save file (bad header: {exc})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT_NAME:
        raise KmemsimFormatError(f"not a kmemsim save file (format is not {FORMAT_NAME!r})")
    version = head.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KmemsimFormatError(f"bad format version {version!r}")
    if version < OLDEST_READABLE:
        raise KmemsimFormatError(
            f"the file has format version {version}, written by an older kmemsim "
            f"({head.get('kmemsim_version')!r}) before kmemleak's objects were stored as "
            f"columns; this kmemsim reads versions {OLDEST_READABLE} to {FORMAT_VERSION}: "
            "build the kernel again and save it with this kmemsim")
    if version > FORMAT_VERSION:
        raise KmemsimFormatError(
            f"the file has format version {version}, written by a newer kmemsim "
            f"({head.get('kmemsim_version')!r}); this kmemsim reads versions up to "
            f"{FORMAT_VERSION}")
    size, raw, digest = head.get("payload_bytes"), head.get("raw_bytes"), head.get(
        "payload_sha256")
    if (head.get("compression") != "zlib" or not isinstance(size, int) or isinstance(size, bool)
            or not isinstance(raw, int) or isinstance(raw, bool) or not isinstance(digest, str)
            or not isinstance(head.get("module_files"), list)):
        raise KmemsimFormatError("malformed header (payload fields)")
    payload = data[nl + 1:]
    if len(payload) < size:
        raise KmemsimFormatError(f"truncated: the payload has {len(payload)} of "
                                 f"{size} bytes")
    if len(payload) > size:
        raise KmemsimFormatError(f"{len(payload) - size} unexpected bytes after the payload")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise KmemsimFormatError("checksum mismatch: the payload is corrupted or was modified")
    if not 8 <= raw <= MAX_ZLIB_RATIO * size + 1024:
        raise KmemsimFormatError(f"malformed header (raw_bytes {raw} for {size} bytes)")
    return head, payload


def _decompress(payload: bytes, raw_size: int) -> bytes:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, raw_size)
        if len(raw) < raw_size and not d.eof:
            raw += d.flush()
    except zlib.error as exc:
        raise KmemsimFormatError(f"corrupted payload ({exc})") from None
    if len(raw) != raw_size or not d.eof or d.unconsumed_tail or d.unused_data:
        raise KmemsimFormatError("corrupted payload (size does not match the header)")
    return raw


# ============================================================================= save
class _Saver:
    """Walks the object graph from the kernel and encodes it (see docs/save-format.md)."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.keep: list[object] = []          # holds every walked object: ids stay unique
        self.parent: list[tuple[int, object]] = []
        self.slot_names: dict[type, list[str]] = {}
        self.entries: list[Any] = []
        self.pending: list[int] = []
        self.blobs: list[memoryview | bytes] = []
        self.blob_pos = 0
        self.blob_index: list[list[int]] = []
        self.module_files: dict[str, dict[str, str]] = {}
        self._file_modules: dict[str, str] | None = None

    # -- paths for error messages
    def path(self, oid: int) -> str:
        steps: list[str] = []
        while oid > 0:
            oid, step = self.parent[oid]
            steps.append(_step_text(step))
        return "k" + "".join(reversed(steps))

    def refuse(self, oid: int, why: str) -> KmemsimValueError:
        return KmemsimValueError(f"cannot save {self.path(oid)}: {why}")

    # -- values
    def value(self, obj: object, parent: int, step: object) -> Any:
        """The JSON encoding of *obj*: inline for scalars, ``[id]`` for everything else.

        *step* says where *obj* is in its parent, for error messages only
        (formatted by :func:`_step_text` only when one is needed).
        """
        if obj is None or obj is True or obj is False or type(obj) is str:
            return obj
        if type(obj) is int:
            return obj
        if type(obj) is float:
            return {"f": obj.hex()}
        oid = self.ids.get(id(obj))
        if oid is None:
            oid = len(self.entries)
            self.ids[id(obj)] = oid
            self.keep.append(obj)
            self.parent.append((parent, step))
            self.entries.append(None)
            self.pending.append(oid)
        return [oid]

    def blob(self, data: memoryview | bytes) -> int:
        self.blob_index.append([self.blob_pos, len(data)])
        self.blobs.append(data)
        self.blob_pos += len(data)
        return len(self.blob_index) - 1

    def run(self, root: object) -> tuple[dict[str, Any], bytes]:
        self.value(root, -1, "")
        self.parent[0] = (0, "")
        while self.pending:
            oid = self.pending.pop()
            self.entries[oid] = self.encode(self.keep[oid], oid)
        doc = {"root": [0], "objects": self.entries, "blobs": self.blob_index}
        return doc, b"".join(self.blobs)

    # -- names of code
    def _user_module(self, modname: str, oid: int) -> None:
        if modname in self.module_files:
            return
        mod = sys.modules.get(modname)
        file = getattr(mod, "__file__", None)
        if not file or not os.path.isfile(file):
            raise self.refuse(oid, f"module {modname} has no source file any more")
        source = Path(file).read_bytes()
        if not _source_matches(mod, source, file):
            raise self.refuse(oid, f"module file {file} changed since it was loaded; the "
                                   "save would pair this state with other code")
        self.module_files[modname] = {"name": modname, "path": os.path.abspath(file),
                                      "sha256": hashlib.sha256(source).hexdigest()}

    def qualified(self, obj: Any, oid: int, what: str) -> dict[str, str]:
        """``{"m": module, "q": qualname}`` of a class or function the loader may resolve."""
        modname, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not isinstance(modname, str) or not isinstance(qualname, str):
            raise self.refuse(oid, f"{what} {obj!r} has no qualified name")
        if "<lambda>" in qualname or "<locals>" in qualname:
            raise self.refuse(oid, f"{what} {modname}.{qualname} is a lambda or a local "
                                   "definition: only module-level code can be saved")
        if modname.startswith(_USER_MODULE_PREFIX):
            self._user_module(modname, oid)
        elif not (_MODULE_NAME.match(modname) and _in_kmemsim(modname)):
            raise self.refuse(
                oid, f"{what} {modname}.{qualname} is defined outside kmemsim and was not "
                     "loaded from a module file with insmod(path); a save may only name "
                     "kmemsim's code and module files")
        try:
            found = _unwrap(_resolve_qualname(sys.modules[modname], qualname))
        except (KeyError, AttributeError):
            found = None
        if found is not obj:
            raise self.refuse(oid, f"{what} {modname}.{qualname} cannot be found again by name")
        return {"m": modname, "q": qualname}

    def code_name(self, code: types.CodeType, oid: int) -> dict[str, str]:
        if self._file_modules is None:
            self._file_modules = {}
            for name, mod in list(sys.modules.items()):
                file = getattr(mod, "__file__", None)
                if file and (name.startswith(_USER_MODULE_PREFIX)
                             or (_MODULE_NAME.match(name) and _in_kmemsim(name))):
                    self._file_modules[os.path.abspath(file)] = name
        modname = self._file_modules.get(os.path.abspath(code.co_filename))
        if modname is None:
            raise self.refuse(oid, f"code object {code.co_qualname} of {code.co_filename} is "
                                   "not in kmemsim or a module file loaded with insmod(path)")
        try:
            fn = _unwrap(_resolve_qualname(sys.modules[modname], code.co_qualname))
        except (KeyError, AttributeError):
            fn = None
        if getattr(fn, "__code__", None) is not code:
            raise self.refuse(oid, f"code object {code.co_qualname} is not the code of a "
                                   "module-level function or method")
        if modname.startswith(_USER_MODULE_PREFIX):
            self._user_module(modname, oid)
        return {"m": modname, "q": code.co_qualname}

    # -- one object
    def encode(self, obj: Any, oid: int) -> dict[str, Any]:
        v = self.value
        t = type(obj)
        if t is list:
            return {"t": "list", "v": [v(x, oid, i) for i, x in enumerate(obj)]}
        if t is tuple:
            return {"t": "tuple", "v": [v(x, oid, i) for i, x in enumerate(obj)]}
        if t is dict or t is collections.OrderedDict or t is collections.Counter:
            return {"t": {dict: "dict", collections.OrderedDict: "odict",
                          collections.Counter: "counter"}[t], "v": self.items(obj, oid)}
        if t is collections.defaultdict:
            return {"t": "defaultdict", "factory": v(obj.default_factory, oid, ".default_factory"),
                    "v": self.items(obj, oid)}
        if t is set or t is frozenset:
            return {"t": t.__name__, "v": [v(x, oid, "{item}") for x in obj]}
        if t is collections.deque:
            return {"t": "deque", "maxlen": obj.maxlen,
                    "v": [v(x, oid, i) for i, x in enumerate(obj)]}
        if t is bytes or t is bytearray:
            return {"t": t.__name__, "blob": self.blob(memoryview(obj))}
        if t is mmap.mmap:
            return self.anonmap(obj)
        if t is array.array:
            return {"t": "array", "typecode": obj.typecode, "itemsize": obj.itemsize,
                    "blob": self.blob(memoryview(obj).cast("B"))}
        if t is complex:
            return {"t": "complex", "v": [obj.real.hex(), obj.imag.hex()]}
        if t is range:
            return {"t": "range", "v": [obj.start, obj.stop, obj.step]}
        if t is memoryview:
            return self.memoryview(obj, oid)
        if t is np.ndarray:
            return self.ndarray(obj, oid)
        if isinstance(obj, np.generic):
            return self.np_scalar(obj, oid)
        if t is np.random.Generator:
            return {"t": "np_generator", "bg": v(obj.bit_generator, oid, ".bit_generator")}
        if t in _BIT_GENERATORS.values():
            seq = obj.seed_seq
            if type(seq) is not np.random.SeedSequence:
                raise self.refuse(oid, "a numpy bit generator without a SeedSequence")
            return {"t": "np_bitgen", "n": t.__name__, "seq": v(seq, oid, ".seed_seq"),
                    "state": v(obj.state, oid, ".state")}
        if t is np.random.SeedSequence:
            ent = obj.entropy
            return {"t": "np_seedseq", "entropy": v(ent, oid, ".entropy"),
                    "spawn_key": [int(x) for x in obj.spawn_key], "pool_size": obj.pool_size,
                    "n_children_spawned": obj.n_children_spawned}
        if t in (SortedList, SortedKeyList, SortedSet, SortedDict):
            return self.sorted(obj, oid)
        if isinstance(obj, type):
            if obj is random.Random:
                return {"t": "builtin_type", "n": "random.Random"}
            if obj.__module__ == "builtins" and _BUILTIN_TYPES.get(obj.__name__) is obj:
                return {"t": "builtin_type", "n": obj.__name__}
            return {"t": "class", **self.qualified(obj, oid, "class")}
        if t is types.FunctionType:
            if obj.__closure__:
                raise self.refuse(oid, f"function {obj.__qualname__} is a closure")
            if _reaches_outside(obj):
                raise self.refuse(oid, f"function {obj.__module__}.{obj.__qualname__} reaches "
                                       "outside the simulation; a save may not hold it")
            return {"t": "function", **self.qualified(obj, oid, "function")}
        if t is types.MethodType:
            name = obj.__func__.__name__
            if _reaches_outside(obj.__func__):
                raise self.refuse(oid, f"method {obj.__func__.__qualname__} reaches outside "
                                       "the simulation; a save may not hold it")
            if getattr(obj.__self__, name, None) != obj:
                raise self.refuse(oid, f"bound method {name} cannot be found again by name")
            return {"t": "method", "self": v(obj.__self__, oid, ".__self__"), "name": name}
        if t is types.BuiltinMethodType and not isinstance(obj.__self__, (type, types.ModuleType)):
            name = obj.__name__
            if obj.__self__ is None or getattr(obj.__self__, name, None) != obj:
                raise self.refuse(oid, f"built-in {name} is not a method of a saved object")
            return {"t": "method", "self": v(obj.__self__, oid, ".__self__"), "name": name}
        if t is types.BuiltinFunctionType:
            raise self.refuse(oid, f"built-in function {obj.__name__} is outside kmemsim: a "
                                   "save may only name kmemsim's code and module files")
        if t is types.CodeType:
            return {"t": "code", **self.code_name(obj, oid)}
        if isinstance(obj, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
            raise self.refuse(oid, f"{t.__name__} {getattr(obj, '__qualname__', '')} is running "
                                   "code (a kernel thread from kthread_run?); stop it "
                                   "(kthread_stop) before saving")
        if isinstance(obj, enum.Enum):
            return {"t": "enum", "c": v(t, oid, ".__class__"), "v": v(obj._value_, oid, ".value")}
        return self.instance(obj, oid)

    def items(self, d: dict[Any, Any], oid: int) -> list[list[Any]]:
        out = []
        for key, val in d.items():
            out.append([self.value(key, oid, ("key", key)), self.value(val, oid, ("value", key))])
        return out

    def sorted(self, obj: Any, oid: int) -> dict[str, Any]:
        """Items in order and, with a key function, their keys: loading never calls the key."""
        key = getattr(obj, "key", None)
        entry: dict[str, Any] = {"key": None if key is None else self.value(key, oid, ".key")}
        if isinstance(obj, SortedDict):
            entry.update(t="sorteddict", v=self.items(obj, oid))
        else:
            entry.update(t="sortedset" if isinstance(obj, SortedSet) else "sortedlist",
                         v=[self.value(x, oid, i) for i, x in enumerate(obj)])
        if key is not None:
            inner = obj if isinstance(obj, SortedKeyList) else obj._list
            entry["keys"] = [self.value(x, oid, f".key({i})")
                             for i, x in enumerate(x for part in inner._keys for x in part)]
        return entry

    def anonmap(self, m: mmap.mmap) -> dict[str, Any]:
        """A lazily zeroed region's buffer: its size and its non-zero page runs.

        Only what was written is saved (a ``mem=4G`` kernel holds mostly
        untouched pages); each run is its own blob, a view until the blob
        area is joined.
        """
        return {"t": "anonmap", "size": len(m),
                "runs": [[off, self.blob(memoryview(m)[off:end])]
                         for off, end in _nonzero_runs(m, ANONMAP_PAGE)]}

    def memoryview(self, mv: memoryview, oid: int) -> dict[str, Any]:
        buf = mv.obj
        if type(buf) not in _BUFFERS or not mv.c_contiguous:
            raise self.refuse(oid, "memoryview that is not a contiguous view of bytes, a "
                                   "bytearray or a region's mmap")
        off = _address(mv) - _address(buf) if mv.nbytes else 0
        return {"t": "memoryview", "buf": self.value(buf, oid, ".obj"), "offset": off,
                "nbytes": mv.nbytes, "format": mv.format, "shape": list(mv.shape or ()),
                "readonly": mv.readonly}

    def _dtype(self, dt: np.dtype[Any], oid: int) -> str | dict[str, Any]:
        """``"<u8"``, or for a flat structured dtype its names, formats, offsets and size."""
        if dt.fields is not None and dt.names:
            fields = [(name, *dt.fields[name][:2]) for name in dt.names]
            if all(f.kind in _NP_KINDS and f.fields is None and f.subdtype is None
                   for _, f, _ in fields):
                return {"names": [n for n, _, _ in fields],
                        "formats": [str(f.str) for _, f, _ in fields],
                        "offsets": [int(o) for _, _, o in fields], "itemsize": dt.itemsize}
        if dt.kind not in _NP_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise self.refuse(oid, f"numpy dtype {dt} (object, nested structured or subarray "
                                   "dtypes are not supported)")
        return str(dt.str)

    def ndarray(self, a: np.ndarray[Any, Any], oid: int) -> dict[str, Any]:
        dtype = self._dtype(a.dtype, oid)
        writeable = bool(a.flags.writeable)
        if a.base is None:
            if not (a.flags.c_contiguous or a.flags.f_contiguous):
                raise self.refuse(oid, "numpy array that owns non-contiguous memory")
            order: Literal["C", "F"] = "C" if a.flags.c_contiguous else "F"
            return {"t": "ndarray", "dtype": dtype, "shape": list(a.shape), "order": order,
                    "writeable": writeable, "blob": self.blob(a.tobytes(order=order))}
        root: Any = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        if root.base is not None:  # a view of a Python buffer (numpy.frombuffer)
            root = root.base.obj if type(root.base) is memoryview else root.base
            if type(root) not in _BUFFERS:
                raise self.refuse(oid, f"numpy array over a {type(root).__name__} buffer")
        off = _address(a) - _address(root) if a.size else 0
        return {"t": "ndarray_view", "base": self.value(root, oid, ".base"), "dtype": dtype,
                "shape": list(a.shape), "strides": list(a.strides), "offset": off,
                "writeable": writeable}

    def np_scalar(self, x: np.generic, oid: int) -> dict[str, Any]:
        dt = x.dtype
        return {"t": "np_scalar", "dtype": self._dtype(dt, oid),
                "hex": np.array(x, dtype=dt).tobytes().hex()}

    def instance(self, obj: Any, oid: int) -> dict[str, Any]:
        cls = type(obj)
        solid = _solid_base(cls)
        entry: dict[str, Any] = {"t": "obj", "c": self.value(cls, oid, ".__class__")}
        if solid is random.Random:
            version, internal, gauss = obj.getstate()
            entry["random"] = [version, list(internal), gauss]
        elif solid is tuple:
            entry["items"] = [self.value(x, oid, i) for i, x in enumerate(obj)]
        elif solid is not object:
            raise self.refuse(oid, f"instance of {cls.__qualname__}, a subclass of the built-in "
                                   f"{solid.__name__}")
        d = getattr(obj, "__dict__", None)
        if d:
            if set(map(type, d)) != {str}:
                raise self.refuse(oid, "an instance __dict__ with non-str keys")
            entry["d"] = [[name, self.value(val, oid, name)] for name, val in d.items()]
        slots = self.slot_names.get(cls)
        if slots is None:
            slots = self.slot_names[cls] = _slot_names(cls)
        if slots:
            entry["s"] = [[name, self.value(getattr(obj, name), oid, name)]
                          for name in slots if hasattr(obj, name)]
        return entry


def _source_matches(mod: Any, source: bytes, file: str) -> bool:
    """True when *source* compiles to the code of the functions *mod* holds now."""
    try:
        compiled = compile(source, file, "exec")
    except (SyntaxError, ValueError):
        return False
    in_file: dict[str, tuple[int, bytes, tuple[object, ...]]] = {}
    todo = [compiled]
    while todo:
        code = todo.pop()
        in_file[code.co_qualname] = (code.co_firstlineno, code.co_code,
                                     tuple(c for c in code.co_consts
                                           if not isinstance(c, types.CodeType)))
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    loaded = [v for v in vars(mod).values() if isinstance(v, types.FunctionType)]
    for cls in (v for v in vars(mod).values() if isinstance(v, type)):
        loaded += [_unwrap(v) for v in vars(cls).values()
                   if isinstance(_unwrap(v), types.FunctionType)]
    for fn in loaded:
        code = fn.__code__
        if code.co_filename == file and in_file.get(code.co_qualname) != (
                code.co_firstlineno, code.co_code,
                tuple(c for c in code.co_consts if not isinstance(c, types.CodeType))):
            return False
    return True


def _step_text(step: object) -> str:
    """A step of an attribute path: ``.name``, ``[3]``, ``['key']``."""
    if isinstance(step, int):
        return f"[{step}]"
    if isinstance(step, tuple):
        text = repr(step[1]) if isinstance(step[1], (int, str)) else "<key>"
        return f"[{text[:40]}]" + ("(key)" if step[0] == "key" else "")
    text = str(step)
    return text if text[:1] in ".[{(" or not text else "." + text


def _in_kmemsim(modname: str) -> bool:
    return modname == "kmemsim" or modname.startswith("kmemsim.")


def _resolve_qualname(start: object, qualname: str) -> Any:
    """Follow *qualname* from a module through classes only (never into another module)."""
    obj = start
    for part in qualname.split("."):
        if not _IDENT.match(part) or (obj is not start and not isinstance(obj, type)):
            raise AttributeError(qualname)
        obj = obj.__dict__[part] if isinstance(obj, type) else vars(obj)[part]
    return obj


def _unwrap(obj: Any) -> Any:
    return obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj


def _solid_base(cls: type) -> type:
    """The built-in type whose memory layout *cls* extends (``object`` for plain classes)."""
    for base in cls.__mro__:
        if base.__module__ == "builtins" or base is random.Random:
            return base if base is not type(None) else object
    return object  # pragma: no cover - every MRO ends with object


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"
            if name not in names:
                names.append(name)
    return names


def _nonzero_runs(buf: mmap.mmap, page: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each maximal run of pages of *buf* holding a non-zero byte.

    Reading an untouched page of a private anonymous mapping maps the host's
    zero page: finding the runs adds nothing to the resident set.

    >>> m = mmap.mmap(-1, 5 * 4096 + 10); m[4096] = 1; m[2 * 4096 + 5] = 2; m[-1] = 3
    >>> _nonzero_runs(m, 4096)
    [(4096, 12288), (20480, 20490)]
    """
    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a)
    full, tail = divmod(n, page)
    nz = np.zeros(full + 2 + (tail > 0), dtype=np.int8)  # a zero page either side
    if full:
        words = a[:full * page].view(np.uint64).reshape(full, page // 8)
        nz[1:full + 1] = np.bitwise_or.reduce(words, axis=1) != 0
    if tail:
        nz[full + 1] = bool(a[full * page:].any())
    edges = np.diff(nz)
    return [(int(s) * page, min(int(e) * page, n))
            for s, e in zip(np.flatnonzero(edges == 1).tolist(),
                            np.flatnonzero(edges == -1).tolist(), strict=True)]


def _address(obj: Any) -> int:
    """The address of the first byte of a buffer (for view offsets only)."""
    if isinstance(obj, np.ndarray):
        return int(obj.__array_interface__["data"][0])
    return int(np.frombuffer(obj, dtype=np.uint8).__array_interface__["data"][0])


def dumps(k: Kernel) -> bytes:
    """The bytes of a save of *k* (what :func:`save` writes).

    >>> from kmemsim import Kernel
    >>> dumps(Kernel()).split(b"\\n", 1)[0].startswith(b'{"compression": "zlib", "format": "kmemsim-save"')
    True
    """
    from .kernel import Kernel

    if not isinstance(k, Kernel):
        raise KmemsimTypeError(f"k must be a Kernel, not {type(k).__name__}")
    saver = _Saver()
    doc, blobs = saver.run(k)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    raw = struct.pack("<Q", len(text)) + text + blobs
    payload = zlib.compress(raw, ZLIB_LEVEL)
    return _header(payload, len(raw), list(saver.module_files.values())) + payload


def save(k: Kernel, path: str | os.PathLike[str]) -> None:
    """Write the whole state of *k* to *path*, atomically (a whole old file or a whole new one).

    Raises :class:`~kmemsim.errors.KmemsimValueError` naming the attribute
    path of anything that cannot be saved (then no file is written).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise KmemsimTypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    target = Path(path)
    if not target.name or target.name in (".", ".."):
        raise KmemsimValueError(f"path must name a file, got {str(path)!r}")
    data = dumps(k)
    # A new name in the same directory (so os.replace is atomic), opened with "x" so the
    # file gets the user's umask, as a plain open() would, unlike mkstemp's 0600.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    f = open(tmp, "xb")  # noqa: SIM115 - closed below; a failed open leaves nothing to remove
    try:
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ============================================================================= load
#: Buffers a memoryview or a numpy view in a save may be a view of.
_BUFFERS = (bytes, bytearray, mmap.mmap)
_IMMUTABLE = frozenset({"tuple", "frozenset", "bytes", "complex", "range", "builtin_type",
                        "class", "function", "code", "enum", "np_scalar", "np_seedseq",
                        "np_bitgen", "np_generator", "method", "memoryview", "ndarray_view"})


class _Loader:
    def __init__(self, doc: dict[str, Any], blobs: memoryview,
                 modules: dict[str, types.ModuleType]) -> None:
        self.entries: list[Any] = doc["objects"]
        self.blob_index: list[Any] = doc["blobs"]
        self.blobs = blobs
        self.modules = modules
        self.objs: list[Any] = [_MISSING] * len(self.entries)
        self.filled = [False] * len(self.entries)

    # -- helpers
    def entry(self, oid: Any) -> dict[str, Any]:
        if type(oid) is not int or not 0 <= oid < len(self.entries):
            raise KmemsimFormatError(f"reference to object {oid!r} out of range")
        e = self.entries[oid]
        if type(e) is not dict or type(e.get("t")) is not str:
            raise KmemsimFormatError(f"object {oid} is malformed")
        return e

    def blob(self, i: Any) -> memoryview:
        off, n = self.blob_index[i] if type(i) is int and 0 <= i < len(self.blob_index) \
            else (-1, -1)
        if type(off) is not int or type(n) is not int or off < 0 or n < 0 \
                or off + n > len(self.blobs):
            raise KmemsimFormatError(f"blob {i!r} is out of range")
        return self.blobs[off:off + n]

    def value(self, enc: Any) -> Any:
        if enc is None or type(enc) in (bool, int, str):
            return enc
        if type(enc) is list and len(enc) == 1:
            return self.get(enc[0])
        if type(enc) is dict and len(enc) == 1 and type(enc.get("f")) is str:
            return float.fromhex(enc["f"])
        raise KmemsimFormatError(f"malformed value {str(enc)[:60]}")

    def resolve(self, m: Any, q: Any) -> Any:
        """A class or function by module and qualified name, from the allowlist only."""
        if type(m) is not str or type(q) is not str:
            raise KmemsimFormatError("malformed code reference")
        if m in self.modules:
            mod = self.modules[m]
        elif _MODULE_NAME.match(m) and _kmemsim_submodule_exists(m):
            mod = importlib.import_module(m)
        else:
            raise KmemsimFormatError(f"the file names {m}.{q}, which is outside the allowlist "
                                     "(kmemsim's code and the module files it records)")
        try:
            obj = _resolve_qualname(mod, q)
        except (KeyError, AttributeError):
            raise KmemsimFormatError(f"{m}.{q} does not exist in this kmemsim") from None
        fn = _unwrap(obj)
        if isinstance(fn, (type, types.FunctionType)) and fn.__module__ == mod.__name__ \
                and fn.__qualname__ == q:
            return fn
        raise KmemsimFormatError(f"{m}.{q} is not a class or function defined there")

    # -- construction
    def get(self, oid: Any) -> Any:
        obj = self.objs[oid] if type(oid) is int and 0 <= oid < len(self.objs) else _MISSING
        if obj is _MISSING:
            obj = self.objs[oid] = self.create(oid)
        return obj

    def create(self, oid: int) -> Any:
        e = self.entry(oid)
        t = e["t"]
        if t == "list":
            return []
        if t == "dict":
            return {}
        if t == "odict":
            return collections.OrderedDict()
        if t == "counter":
            return collections.Counter()
        if t == "defaultdict":
            return collections.defaultdict()
        if t == "set":
            return set()
        if t == "deque":
            maxlen = e["maxlen"]
            if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
                raise KmemsimFormatError("bad deque maxlen")
            return collections.deque(maxlen=maxlen)
        if t == "bytearray":
            return bytearray(self.blob(e["blob"]))
        if t == "anonmap":
            return self.anonmap(e)
        if t == "array":
            code, data = e["typecode"], self.blob(e["blob"])
            if type(code) is not str or code not in array.typecodes or code == "u":
                raise KmemsimFormatError(f"bad array typecode {code!r}")
            words = array.array(code)
            if words.itemsize != e["itemsize"] or len(data) % words.itemsize:
                raise KmemsimFormatError("an array saved with another item size")
            words.frombytes(data)
            return words
        if t == "ndarray":
            dt = _np_dtype(e["dtype"])
            shape = _int_list(e["shape"])
            data = self.blob(e["blob"])
            count = int(np.prod(shape, dtype=np.int64))
            if count * dt.itemsize != len(data) or e["order"] not in ("C", "F"):
                raise KmemsimFormatError("numpy array size does not match its data")
            arr = np.frombuffer(data, dtype=dt, count=count).reshape(shape, order=e["order"])
            arr = arr.copy(order=e["order"])
            arr.flags.writeable = bool(e["writeable"])
            return arr
        if t in ("sortedlist", "sortedset", "sorteddict"):
            key = None if e["key"] is None else self.value(e["key"])
            if key is not None and not callable(key):
                raise KmemsimFormatError("a sorted container's key is not callable")
            if t == "sorteddict":
                return SortedDict(key) if key is not None else SortedDict()
            if t == "sortedset":
                return SortedSet(key=key)
            return SortedKeyList(key=key) if key is not None else SortedList()
        if t == "obj":
            cls = self.value(e["c"])
            if not isinstance(cls, type):
                raise KmemsimFormatError("an object's class is not a class")
            solid = _solid_base(cls)
            if solid is tuple:
                return tuple.__new__(cls, [self.value(x) for x in e["items"]])
            if solid is random.Random:
                r: random.Random = random.Random.__new__(cls)
                version, internal, gauss = e["random"]
                r.setstate((version, tuple(_int_list(internal)), gauss))
                return r
            if solid is not object:
                raise KmemsimFormatError(f"class {cls.__qualname__} cannot be rebuilt")
            return object.__new__(cls)  # no __init__: the attributes come from the file
        if t in _IMMUTABLE:
            return self.immutable(e, t)
        raise KmemsimFormatError(f"unknown object type {t!r}")

    def immutable(self, e: dict[str, Any], t: str) -> Any:
        if t == "tuple":
            return tuple(self.value(x) for x in e["v"])
        if t == "frozenset":
            items = [self.value(x) for x in e["v"]]
            for x in e["v"]:
                self.hash_ready(x)
            return frozenset(items)
        if t == "bytes":
            return bytes(self.blob(e["blob"]))
        if t == "complex":
            return complex(float.fromhex(e["v"][0]), float.fromhex(e["v"][1]))
        if t == "range":
            return range(*_int_list(e["v"]))
        if t == "builtin_type":
            return _BUILTIN_TYPES[e["n"]]
        if t in ("class", "function"):
            obj = self.resolve(e["m"], e["q"])
            if isinstance(obj, type) != (t == "class"):
                raise KmemsimFormatError(f"{e['m']}.{e['q']} is not a {t}")
            if t == "function" and _reaches_outside(obj):
                raise KmemsimFormatError(f"the file names {e['m']}.{e['q']}, which reaches "
                                         "outside the simulation, as a value")
            return obj
        if t == "code":
            fn = self.resolve(e["m"], e["q"])
            if not isinstance(fn, types.FunctionType):
                raise KmemsimFormatError(f"{e['m']}.{e['q']} is not a function")
            return fn.__code__
        if t == "enum":
            cls = self.value(e["c"])
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise KmemsimFormatError("an enum member of a class that is not an Enum")
            return cls(self.value(e["v"]))
        if t == "method":
            owner = self.value(e["self"])
            name = e["name"]
            if type(name) is not str or not _IDENT.match(name):
                raise KmemsimFormatError("bad method name")
            m = getattr(owner, name)
            ok = (type(m) is types.MethodType and m.__self__ is owner
                  and type(m.__func__) is types.FunctionType
                  and self.allowed_module(m.__func__.__module__)
                  and not _reaches_outside(m.__func__)) or (
                type(m) is types.BuiltinMethodType and m.__self__ is owner
                and not isinstance(owner, (type, types.ModuleType)))
            if not ok:
                raise KmemsimFormatError(f"{name} is not a method that may be restored")
            return m
        if t == "memoryview":
            buf = self.value(e["buf"])
            if type(buf) not in _BUFFERS:
                raise KmemsimFormatError("a memoryview over something else than bytes")
            off, n = _int_list([e["offset"], e["nbytes"]])
            if off < 0 or off + n > len(buf) or type(e["format"]) is not str:
                raise KmemsimFormatError("a memoryview out of its buffer")
            mv = memoryview(buf)[off:off + n]
            if e["format"] != "B" or len(e["shape"]) != 1:
                mv = mv.cast(e["format"], _int_list(e["shape"]))  # type: ignore[call-overload]
            return mv.toreadonly() if e["readonly"] and not mv.readonly else mv
        if t == "ndarray_view":
            base = self.value(e["base"])
            if type(base) not in (*_BUFFERS, np.ndarray):
                raise KmemsimFormatError("a numpy view of something else than an array or bytes")
            arr = np.ndarray(tuple(_int_list(e["shape"])), dtype=_np_dtype(e["dtype"]),
                             buffer=base, offset=int(e["offset"]),
                             strides=tuple(_int_list(e["strides"])))
            if not e["writeable"]:
                arr.flags.writeable = False
            return arr
        if t == "np_scalar":
            dt = _np_dtype(e["dtype"])
            data = bytes.fromhex(e["hex"])
            if len(data) != dt.itemsize:
                raise KmemsimFormatError("numpy scalar size does not match its dtype")
            return np.frombuffer(data, dtype=dt)[0]
        if t == "np_seedseq":
            ent = self.value(e["entropy"])
            return np.random.SeedSequence(ent, spawn_key=tuple(_int_list(e["spawn_key"])),
                                          pool_size=int(e["pool_size"]),
                                          n_children_spawned=int(e["n_children_spawned"]))
        if t == "np_bitgen":
            cls = _BIT_GENERATORS[e["n"]]
            seq = self.value(e["seq"])
            if type(seq) is not np.random.SeedSequence:
                raise KmemsimFormatError("a bit generator without its SeedSequence")
            bg = cls(seq)
            state = self.value(e["state"])
            self.fill_deep(e["state"])
            bg.state = state
            return bg
        if t == "np_generator":
            bg = self.value(e["bg"])
            if type(bg) not in _BIT_GENERATORS.values():
                raise KmemsimFormatError("a numpy Generator without a bit generator")
            return np.random.Generator(bg)
        raise KmemsimFormatError(f"unknown object type {t!r}")  # pragma: no cover

    def anonmap(self, e: dict[str, Any]) -> RegionData:
        """A lazily zeroed buffer (:func:`kmemsim.memory.zeroed`) with the saved runs written.

        Only the saved (non-zero) pages are touched: the restored region is as
        lazy as the original.
        """
        size, runs = e.get("size"), e.get("runs")
        if type(size) is not int or not 0 < size <= sys.maxsize or type(runs) is not list:
            raise KmemsimFormatError("malformed anonmap (size, runs)")
        try:
            buf = zeroed(size)
        except (OSError, OverflowError, ValueError, MemoryError):
            raise KmemsimFormatError(f"cannot map an anonmap of {size} bytes") from None
        done = 0
        for run in runs:
            if type(run) is not list or len(run) != 2 or type(run[0]) is not int:
                raise KmemsimFormatError("malformed anonmap run")
            off, data = run[0], self.blob(run[1])
            if off < done or off + len(data) > size:
                raise KmemsimFormatError("anonmap runs out of order or out of range")
            buf[off:off + len(data)] = data
            done = off + len(data)
        return buf

    def allowed_module(self, modname: str) -> bool:
        return modname in self.modules or bool(_MODULE_NAME.match(modname)
                                               and _in_kmemsim(modname))

    def hash_ready(self, enc: Any) -> None:
        """Make *enc*'s object hashable as it was: instances get their attributes first."""
        if type(enc) is list and len(enc) == 1:
            oid = enc[0]
            e = self.entry(oid)
            if e["t"] == "obj":
                self.fill(oid)
            elif e["t"] == "tuple":
                for x in e["v"]:
                    self.hash_ready(x)

    def fill_deep(self, enc: Any) -> None:
        """Fill a small plain tree (a bit generator's state dict) before it is used."""
        if type(enc) is list and len(enc) == 1:
            oid = enc[0]
            self.fill(oid)
            e = self.entry(oid)
            if e["t"] in ("dict", "list"):
                for item in e["v"]:
                    for x in (item if e["t"] == "dict" else [item]):
                        self.fill_deep(x)

    def fill(self, oid: int) -> None:
        if self.filled[oid]:
            return
        self.filled[oid] = True
        obj = self.get(oid)
        e = self.entries[oid]
        t = e["t"]
        if t == "obj":
            for field in ("d", "s"):
                for name, val in e.get(field, ()):
                    if type(name) is not str or not _IDENT.match(name) or (
                            name.startswith("__") and name.endswith("__")):
                        raise KmemsimFormatError(f"bad attribute name {str(name)[:40]!r}")
                    object.__setattr__(obj, name, self.value(val))
        elif t in ("list", "deque"):
            obj.extend(self.value(x) for x in e["v"])
        elif t == "set":
            for x in e["v"]:
                self.hash_ready(x)
            obj.update(self.value(x) for x in e["v"])
        elif t in ("sortedlist", "sortedset"):
            for x in e["v"]:
                self.hash_ready(x)
            items = [self.value(x) for x in e["v"]]
            if t == "sortedset":
                obj._set.update(items)
                if len(obj._set) != len(items):
                    raise KmemsimFormatError("a sorted set with repeated items")
            self.restore_sorted(obj if t == "sortedlist" else obj._list, items, e)
        elif t in ("dict", "odict", "counter", "defaultdict", "sorteddict"):
            if t == "defaultdict":
                factory = self.value(e["factory"])
                if factory is not None and not callable(factory):
                    raise KmemsimFormatError("a defaultdict factory is not callable")
                obj.default_factory = factory
            for pair in e["v"]:
                if type(pair) is not list or len(pair) != 2:
                    raise KmemsimFormatError("malformed dict item")
                self.hash_ready(pair[0])
                dict.__setitem__(obj, self.value(pair[0]), self.value(pair[1]))
            if t == "sorteddict":
                keys = list(dict.keys(obj))
                if len(keys) != len(e["v"]):
                    raise KmemsimFormatError("a sorted dict with repeated keys")
                self.restore_sorted(obj._list, keys, e)

    def restore_sorted(self, sl: Any, items: list[Any], e: dict[str, Any]) -> None:
        """Set a SortedList's sublists directly: a key function named by the file is not
        called while loading, and the order is checked rather than trusted."""
        keyed = e["key"] is not None
        keys = [self.value(x) for x in e["keys"]] if keyed else items
        if len(keys) != len(items) or any(b < a for a, b in itertools.pairwise(keys)):
            raise KmemsimFormatError("a sorted container whose items are not in order")
        load = sl._load
        sl._lists = [items[i:i + load] for i in range(0, len(items), load)]
        if keyed:
            sl._keys = [keys[i:i + load] for i in range(0, len(keys), load)]
        sl._maxes = [part[-1] for part in (sl._keys if keyed else sl._lists)]
        sl._len = len(items)
        sl._index = []
        sl._offset = 0

    def run(self, root: Any) -> Any:
        n = len(self.entries)
        for oid in range(n):  # every object exists before any is filled: cycles resolve
            self.get(oid)
        # Sorted containers compare items: they are filled after every instance they hold.
        for oid in sorted(range(n), key=lambda i: self.entries[i]["t"] in (
                "sortedlist", "sortedset", "sorteddict")):
            self.fill(oid)
        return self.value(root)


_MISSING = object()


def _kmemsim_submodule_exists(name: str) -> bool:
    if name in sys.modules:
        return True
    if any(part.startswith("_") for part in name.split(".")):
        return False  # never import kmemsim.__main__ (it runs the command line)
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _int_list(values: Any) -> list[int]:
    if type(values) is not list or not all(type(v) is int for v in values):
        raise KmemsimFormatError("expected a list of integers")
    return values


def _np_dtype(spec: Any) -> np.dtype[Any]:
    """A dtype from its saved form: a simple type string, or a flat structured dtype."""
    if type(spec) is dict and set(spec) == {"names", "formats", "offsets", "itemsize"}:
        names, formats = spec["names"], spec["formats"]
        if type(names) is not list or not all(type(n) is str for n in names) \
                or type(formats) is not list or len(formats) != len(names):
            raise KmemsimFormatError("bad structured numpy dtype")
        return np.dtype({"names": names, "formats": [_np_dtype(f) for f in formats],
                         "offsets": _int_list(spec["offsets"]),
                         "itemsize": _int_list([spec["itemsize"]])[0]})
    if type(spec) is not str or not re.fullmatch(r"[<>|=][biufcmMSU]\d+(\[\w+\])?", spec):
        raise KmemsimFormatError(f"bad numpy dtype {spec!r}")
    return np.dtype(spec)


def _import_module_file(record: Any, trusted: Iterable[Path]) -> types.ModuleType:
    """Re-import a module file a save names, if its contents still match and it is trusted."""
    if not (isinstance(record, dict) and isinstance(record.get("name"), str)
            and isinstance(record.get("path"), str) and isinstance(record.get("sha256"), str)
            and record["name"].startswith(_USER_MODULE_PREFIX)):
        raise KmemsimFormatError("malformed module file record")
    name, path, digest = record["name"], Path(record["path"]), record["sha256"]
    if path.suffix != ".py" or not path.is_file():  # never open a device or a pipe
        raise KmemsimFormatError(f"the save needs module file {path}, which is not a .py file")
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise KmemsimFormatError(f"the save needs module file {path}, which cannot be "
                                 f"read: {exc.strerror}") from None
    if hashlib.sha256(source).hexdigest() != digest:
        raise KmemsimFormatError(f"module file {path} changed since the save (sha256 "
                                 f"mismatch); restore it or load the save elsewhere")
    current = sys.modules.get(name)
    if current is not None and os.path.abspath(getattr(current, "__file__", "") or "") \
            == os.path.abspath(path):
        return current  # already imported in this process: the same classes, no new code run
    resolved = {p.resolve() for p in trusted}
    if path.resolve() not in resolved:
        raise KmemsimFormatError(
            f"the save needs module file {path}; loading it runs its code, so pass it in "
            "module_files=[...] to trust it")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise KmemsimFormatError(f"module file {path} is not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        exec(compile(source, str(path), "exec"), mod.__dict__)  # the verified bytes, not a reread
    except Exception as exc:
        del sys.modules[name]
        raise KmemsimFormatError(f"module file {path} failed to import: {exc!r}") from exc
    return mod


def loads(data: bytes, *, module_files: Iterable[str | os.PathLike[str]] = ()) -> Kernel:
    """Rebuild a kernel from the bytes of a save (see :func:`load`).

    >>> from kmemsim import Kernel
    >>> loads(dumps(Kernel(seed=5))).seed
    5
    >>> loads(b"PK\\x03\\x04")
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimFormatError: not a kmemsim save file (no JSON header line)
    """
    from .kernel import Kernel

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise KmemsimTypeError(f"data must be bytes, not {type(data).__name__}")
    head, payload = _read_header(bytes(data))
    raw = _decompress(payload, head["raw_bytes"])
    (doc_len,) = struct.unpack_from("<Q", raw)
    if doc_len > len(raw) - 8:
        raise KmemsimFormatError("corrupted payload (document length)")
    try:
        doc = json.loads(raw[8:8 + doc_len])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise KmemsimFormatError(f"corrupted payload document ({exc})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("objects"), list)
            and isinstance(doc.get("blobs"), list) and doc.get("root") == [0]):
        raise KmemsimFormatError("malformed payload document")
    trusted = [Path(p) for p in module_files]
    modules: dict[str, types.ModuleType] = {}
    for rec in head["module_files"]:
        mod = _import_module_file(rec, trusted)
        modules[mod.__name__] = mod
    loader = _Loader(doc, memoryview(raw)[8 + doc_len:], modules)
    try:
        k = loader.run(doc["root"])
    except KmemsimFormatError:
        raise
    except Exception as exc:  # a consistent checksum over inconsistent contents
        raise KmemsimFormatError(f"malformed payload ({type(exc).__name__}: {exc})") from exc
    if not isinstance(k, Kernel):
        raise KmemsimFormatError("the saved root object is not a Kernel")
    k.slab.upgrade_saved_bookkeeping()  # (saves from before the slabs' per-slot states)
    return k


def load(path: str | os.PathLike[str], *,
         module_files: Iterable[str | os.PathLike[str]] = ()) -> Kernel:
    """Read a save written by :func:`save` and return the restored kernel.

    Module files the kernel had loaded with ``insmod(path)`` are re-imported
    only when their contents still match the hash in the save, and, unless
    this process already imported them, only when listed in *module_files*
    (importing a file runs it).  Anything wrong with the file raises
    :class:`~kmemsim.errors.KmemsimFormatError` and nothing is returned.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise KmemsimTypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no save file {path}") from None
    return loads(data, module_files=module_files)


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "OLDEST_READABLE", "dumps", "load", "loads", "save"]

"""Save and restore (issue 8): a restored kernel continues exactly as the original would,
and a damaged, tampered, newer or foreign file is refused without running anything."""

from __future__ import annotations

import array
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from savefiles import canonical, join, split
from sortedcontainers import SortedDict, SortedKeyList

from kmemsim import Kernel, KmemsimValueError
from kmemsim.errors import KmemsimFormatError
from kmemsim.mm.page_alloc import get_order
from kmemsim.persist import FORMAT_VERSION, OLDEST_READABLE, dumps, loads
from kmemsim.strategies import KernelSpec, Operation, Replayer, operations
from kmemsim.truth import judge
from kmemsim.workloads.gallery import GALLERY

KMEMLEAK = "/sys/kernel/debug/kmemleak"
ARCHS = ("x86_64", "arm64", "i386")


# ------------------------------------------------------------------ helpers
def observe(k: Kernel) -> list[str]:
    """Everything a user can see now: the listing, dmesg and every verdict."""
    j = judge(k)
    verdicts = "\n".join(str(j.verdicts[p]) for p in sorted(j.verdicts))
    return [k.read(KMEMLEAK), k.dmesg(), str(j), verdicts, repr(k),
            k.read("/proc/meminfo"), k.read("/proc/slabinfo")]


def go_on(k: Kernel) -> list[str]:
    """Continue a kernel a while: allocate (with the kernel's rng), scan twice, free."""
    out = observe(k)
    blocks = [k.kmalloc(16 + k.rng.randrange(500)) for _ in range(5)] + [k.vmalloc(6000)]
    k.store(blocks[0], blocks[1])
    k.sleep(6)
    k.write(KMEMLEAK, "scan")
    k.sleep(6)
    k.write(KMEMLEAK, "scan")
    out += observe(k)
    k.kfree(blocks[0])
    k.sleep(61)  # the scan thread's own schedule
    out += observe(k)
    return out


def roundtrip(k: Kernel, tmp_path: Path | None = None) -> Kernel:
    if tmp_path is None:
        k2 = loads(dumps(k))
    else:
        path = tmp_path / "state.kmemsim"
        k.save(path)
        k2 = Kernel.load(path)
    k2._check()  # the detector index and the page allocator's sorted free lists
    return k2


# ------------------------------------------------------- continue identically
ARTICLE_STEPS: list[Callable[[Kernel], object]] = [
    lambda k: k.modprobe("article_leak"),
    lambda k: k.sleep(10),
    lambda k: k.write(KMEMLEAK, "scan\n"),
    lambda k: k.sleep(5),
    lambda k: k.write(KMEMLEAK, "scan\n"),
    lambda k: k.rmmod("article_leak"),
    lambda k: k.sleep(5),
    lambda k: k.write(KMEMLEAK, "scan"),
    lambda k: k.sleep(5),
    lambda k: k.write(KMEMLEAK, "scan"),
]


def run_article(k: Kernel, steps: list[Callable[[Kernel], object]]) -> list[str]:
    out = []
    for step in steps:
        step(k)
        out.append(k.read(KMEMLEAK) + k.dmesg())
    out.append(str(k.addr2line("article_leak_init+0x69")))
    return out + go_on(k)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("at", [0, 1, 3, 5, 6, 8, 10],
                         ids=["boot", "module-loaded", "after-scan", "after-scans",
                              "after-rmmod", "after-rmmod-sleep", "end"])
def test_article_continues_identically(arch: str, at: int, tmp_path: Path) -> None:
    k = Kernel(arch=arch, cmdline="slub_debug=P", seed=7)
    for step in ARTICLE_STEPS[:at]:
        step(k)
    k2 = roundtrip(k, tmp_path)
    assert k2 is not k
    assert k2.memory is not k.memory
    rest = ARTICLE_STEPS[at:]
    assert run_article(k2, rest) == run_article(k, rest)


GALLERY_CASES = ["xor_linked_list", "stale_stack_slot", "tagged_pointer", "reused_slab_memory",
                 "leaked_tree", "transient_leak_pending", "scan_area_misses_pointer",
                 "physical_address"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", GALLERY_CASES)
def test_gallery_continues_identically(name: str, arch: str) -> None:
    scenario = GALLERY[name]
    k = scenario.boot(arch, seed=1)
    k_boot = roundtrip(k)  # saved before the scenario: it builds the same situation
    expectation = scenario.build(k)
    expectation_boot = scenario.build(k_boot)
    assert expectation_boot.objects == expectation.objects
    k2 = roundtrip(k)  # saved after its scans, with its frames still open
    a, b, c = go_on(k), go_on(k2), go_on(k_boot)
    assert a == b == c


def test_redump_is_identical() -> None:
    k = Kernel(arch="arm64", cmdline="slub_debug=P")
    k.modprobe("article_leak")
    k.sleep(10)
    k.write(KMEMLEAK, "scan")
    data = dumps(k)
    assert canonical(dumps(loads(data))) == canonical(data)


def test_shared_references_cycles_and_views_survive() -> None:
    k = Kernel(seed=2)
    region = next(r for r in k.memory.regions() if r.kind == "kernel")
    shared = [1, 2]
    k.extra = {  # type: ignore[attr-defined]
        "a": shared, "b": shared, "cycle": None, "tuple_key": {(1, "x"): frozenset({3})},
        "view": np.frombuffer(region.data, dtype="<u8", count=4, offset=64),
        "mv": memoryview(region.data)[128:160].cast("Q"),
        "array": np.arange(12, dtype=np.int64).reshape(3, 4)[:, 1::2],
        "np_rng": np.random.default_rng(np.random.SeedSequence(11)),
        "scalar": np.uint64(2**63 + 5), "float": -0.1, "nan": float("nan"),
        "sorted": SortedDict({5: "e", 1: "a"}), "bytes": b"\x00\xff",
        "keyed": SortedKeyList([70000, 1, 4096], key=get_order),
        "method": k.printk, "code": Kernel.sleep.__code__, "words": array.array("Q", [7, 2**64 - 1]),
        "columns": np.zeros(3, dtype=np.dtype({"names": ["ptr", "size", "flags"],
                                                "formats": ["<u8", "<u4", "u1"],
                                                "offsets": [0, 8, 14], "itemsize": 16})),
    }
    k.extra["columns"]["ptr"] = [1, 2**64 - 1, 3]  # type: ignore[attr-defined]
    k.extra["scalar_row"] = k.extra["columns"][1]  # type: ignore[attr-defined]
    k.extra["cycle"] = k.extra  # type: ignore[attr-defined]
    k.extra["np_rng"].spawn(2)  # type: ignore[attr-defined]
    k2 = loads(dumps(k))
    x = k2.extra  # type: ignore[attr-defined]
    assert x["a"] is x["b"]
    assert x["cycle"] is x
    assert x["tuple_key"] == {(1, "x"): frozenset({3})}
    region2 = next(r for r in k2.memory.regions() if r.kind == "kernel")
    x["view"][0] = 0x1122334455667788  # a view of the restored buffer, not a copy
    assert k2.memory.read_word(region2.start + 64) == 0x1122334455667788
    x["mv"][1] = 7
    assert k2.memory.read_word(region2.start + 136) == 7
    assert k.memory.read_word(region.start + 64) == 0  # the original is untouched
    assert x["array"].tolist() == [[1, 3], [5, 7], [9, 11]]
    assert x["np_rng"].integers(1 << 60, size=4).tolist() == \
        k.extra["np_rng"].integers(1 << 60, size=4).tolist()  # type: ignore[attr-defined]
    child, child2 = x["np_rng"].spawn(1)[0], k.extra["np_rng"].spawn(1)[0]  # type: ignore[attr-defined]
    assert child.integers(1 << 60, size=3).tolist() == child2.integers(1 << 60, size=3).tolist()
    assert type(x["scalar"]) is np.uint64
    assert x["scalar"] == 2**63 + 5
    assert x["float"] == -0.1
    assert x["nan"] != x["nan"]
    assert list(x["sorted"].items()) == [(1, "a"), (5, "e")]
    assert list(x["keyed"]) == [1, 4096, 70000]
    x["sorted"]._check()
    x["keyed"]._check()
    x["keyed"].add(9000)  # the key function is back (get_order: 0, 0, 2, 5)
    assert list(x["keyed"]) == [1, 4096, 9000, 70000]
    x["method"]("hello from the copy")
    assert k2.dmesg().endswith("hello from the copy\n")
    assert "copy" not in k.dmesg()
    assert x["code"] is Kernel.sleep.__code__
    assert x["words"] == array.array("Q", [7, 2**64 - 1])
    assert x["columns"].dtype == k.extra["columns"].dtype  # type: ignore[attr-defined]
    assert x["columns"]["ptr"].tolist() == [1, 2**64 - 1, 3]
    assert x["scalar_row"]["ptr"] == 2**64 - 1


def test_random_state_continues() -> None:
    k = Kernel(seed=9)
    k.rng.random()
    k2 = loads(dumps(k))
    assert [k2.rng_word() for _ in range(5)] == [k.rng_word() for _ in range(5)]


@settings(max_examples=20, deadline=None)
@given(ops=operations(min_size=2, max_size=25), cut=st.integers(0, 25),
       arch=st.sampled_from(ARCHS))
def test_random_operations_continue_identically(ops: list[Operation], cut: int, arch: str) -> None:
    k = KernelSpec(arch=arch).boot()
    r = Replayer(k)
    cut = min(cut, len(ops))
    for op in ops[:cut]:
        r.apply(op)
    k2 = loads(dumps(k))
    r2 = Replayer.__new__(Replayer)  # the same replay bookkeeping, over the restored kernel
    r2.k, r2.statics, r2.blocks, r2.scans = k2, r.statics, list(r.blocks), []
    r2.cache = k2.slab.caches["replay_cache"]
    r2.worker = next(t for t in k2.tasks if t.comm == "replay_worker")
    for op in ops[cut:]:
        r.apply(op)
        r2.apply(op)
    after_cut = r.scans[len(r.scans) - len(r2.scans):]
    assert [s.new_leaks for s in r2.scans] == [s.new_leaks for s in after_cut]
    assert observe(k2) == observe(k)


# --------------------------------------------------------------- saving refuses
def test_running_kthread_is_refused_with_its_path(tmp_path: Path) -> None:
    k = Kernel()

    def ticker() -> Iterator[float]:
        while True:
            yield 1.0

    task = k.kthread_run(ticker(), "ticker")
    path = tmp_path / "k.kmemsim"
    path.write_bytes(b"old contents")
    with pytest.raises(KmemsimValueError, match=r"k\._kthreads\[\d+\]\[3\].*kthread_stop"):
        k.save(path)
    assert path.read_bytes() == b"old contents"  # atomic: the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["k.kmemsim"]  # no temporary left
    k.kthread_stop(task)
    k.save(path)
    assert Kernel.load(path).dmesg() == k.dmesg()


@pytest.mark.parametrize(("value", "why"), [
    (lambda: 0, "lambda"),
    (random, "outside kmemsim"),
    (type("Local", (), {}), "outside kmemsim"),
    (open, "outside kmemsim"),
    (SortedKeyList([1], key=abs), "outside kmemsim"),
    (Kernel.insmod, "outside the simulation"),
    (Kernel().save, "outside the simulation"),
])
def test_unsupported_values_are_refused(value: object, why: str, tmp_path: Path) -> None:
    k = Kernel()
    k.statics_note = {"x": [value]}  # type: ignore[attr-defined]
    with pytest.raises(KmemsimValueError, match=r"k\.statics_note\['x'\]\[0\]") as info:
        k.save(tmp_path / "k.kmemsim")
    assert why in str(info.value) or "cannot save" in str(info.value)
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------- loading refuses
@pytest.fixture(scope="module")
def small_save() -> bytes:
    k = Kernel(seed=4)
    p = k.kmalloc(64)
    k.sleep(10)
    k.kfree(p)
    return dumps(k)


def test_truncated_files_are_refused(small_save: bytes) -> None:
    cuts = list(range(600)) + list(range(600, len(small_save), 997)) + [len(small_save) - 1]
    for n in cuts:
        with pytest.raises(KmemsimFormatError):
            loads(small_save[:n])


def test_bit_flips_are_refused(small_save: bytes) -> None:
    rng = random.Random(0)
    for _ in range(200):
        data = bytearray(small_save)
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        with pytest.raises(KmemsimFormatError):
            loads(bytes(data))


def test_trailing_bytes_newer_version_and_foreign_files(small_save: bytes, tmp_path: Path
                                                        ) -> None:
    with pytest.raises(KmemsimFormatError, match="unexpected bytes"):
        loads(small_save + b"\0")
    head, doc, blobs = split(small_save)
    newer = join(dict(head, version=FORMAT_VERSION + 1), doc, blobs)
    with pytest.raises(KmemsimFormatError, match="newer kmemsim"):
        loads(newer)
    # version 1 saved each kmemleak_object as an object: refused, saying why
    older = join(dict(head, version=OLDEST_READABLE - 1), doc, blobs)
    with pytest.raises(KmemsimFormatError, match=r"older kmemsim.*columns"):
        loads(older)
    for foreign in (b"", b"\n", b"PK\x03\x04" + bytes(100), b'{"format": "other"}\n',
                    b"\x80\x04\x95" + bytes(20), os.urandom(300), b"{" * 70000):
        with pytest.raises(KmemsimFormatError):
            loads(foreign)
    missing = tmp_path / "nope.kmemsim"
    with pytest.raises(FileNotFoundError):
        Kernel.load(missing)


def _forge(small_save: bytes, entry: dict[str, Any]) -> bytes:
    """Replace the class of the kernel's config with *entry* (a recomputed, valid checksum)."""
    head, doc, blobs = split(small_save)
    objs = doc["objects"]
    cfg = next(e for e in objs if e["t"] == "class" and e["q"] == "KernelConfig")
    cfg.clear()
    cfg.update(entry)
    return join(head, doc, blobs)


@pytest.mark.parametrize("entry", [
    {"t": "function", "m": "os", "q": "system"},
    {"t": "function", "m": "posix", "q": "system"},
    {"t": "class", "m": "subprocess", "q": "Popen"},
    {"t": "function", "m": "builtins", "q": "eval"},
    {"t": "function", "m": "kmemsim.kernel", "q": "os.system"},
    {"t": "class", "m": "kmemsim.__main__", "q": "main"},
    {"t": "function", "m": "kmemsim.cli", "q": "main.__globals__"},
    {"t": "function", "m": "kmemsim.cli", "q": "main"},
    {"t": "function", "m": "kmemsim.workloads", "q": "load_module_file"},
    {"t": "function", "m": "kmemsim.persist", "q": "save"},
    {"t": "class", "m": "kmemsim_usermod_x_1", "q": "X"},
    {"t": "builtin_type", "n": "eval"},
    {"t": "np_bitgen", "n": "os", "seq": None, "state": None},
    {"t": "pickle", "v": "cos\nsystem\n"},
])
def test_tampered_payloads_run_nothing(small_save: bytes, entry: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **kw: calls.append(a))
    before = set(sys.modules)
    with pytest.raises(KmemsimFormatError):
        loads(_forge(small_save, entry))
    assert calls == []
    assert "kmemsim.__main__" not in set(sys.modules) - before


def _dangling_reference(d: dict[str, Any]) -> None:
    d["objects"].append({"t": "list", "v": [[10**9]]})


def _root_not_a_kernel(d: dict[str, Any]) -> None:
    d["root"] = [1]


def _class_attribute(d: dict[str, Any]) -> None:
    cls = next(i for i, e in enumerate(d["objects"]) if e["t"] == "class" and e["q"] == "Task")
    task_obj = next(e for e in d["objects"] if e["t"] == "obj" and e["c"] == [cls])
    task_obj["d"].append(["__class__", [cls]])  # layouts match: only the name check stops it


def _blob_past_the_end(d: dict[str, Any]) -> None:
    end = max(off + n for off, n in d["blobs"])
    d["blobs"].append([end - 5, 10])
    d["objects"].append({"t": "bytes", "blob": len(d["blobs"]) - 1})
    d["objects"][0]["d"].append(["x", [len(d["objects"]) - 1]])


def _method_that_is_no_method(d: dict[str, Any]) -> None:
    i = next(i for i, e in enumerate(d["objects"]) if e["t"] == "method")
    d["objects"][i]["name"] = "__init_subclass__"


def _method_that_writes_files(d: dict[str, Any]) -> None:
    i = next(i for i, e in enumerate(d["objects"]) if e["t"] == "method")
    d["objects"][i]["self"] = [0]  # the kernel
    d["objects"][i]["name"] = "save"


def _unsorted_sorted_list(d: dict[str, Any]) -> None:
    e = next(e for e in d["objects"] if e["t"] == "sortedlist" and len(e["v"]) > 1)
    e["v"].reverse()


def _unknown_kind(d: dict[str, Any]) -> None:
    d["objects"][0]["t"] = "pickle"


def _bad_dtype(d: dict[str, Any]) -> None:
    d["objects"].append({"t": "np_scalar", "dtype": "O", "hex": "00"})
    d["objects"][0]["d"].append(["x", [len(d["objects"]) - 1]])


@pytest.mark.parametrize("mutate", [_dangling_reference, _root_not_a_kernel, _class_attribute,
                                    _blob_past_the_end, _method_that_is_no_method,
                                    _method_that_writes_files, _unsorted_sorted_list,
                                    _unknown_kind, _bad_dtype])
def test_tampered_structure_is_refused(small_save: bytes,
                                       mutate: Callable[[dict[str, Any]], None]) -> None:
    head, doc, blobs = split(small_save)
    mutate(doc)
    with pytest.raises(KmemsimFormatError):
        loads(join(head, doc, blobs))


# ---------------------------------------------------------- module files (insmod)
MODULE_SOURCE = textwrap.dedent('''
    from kmemsim import Module

    class Keeper(Module):
        name = "keeper"
        statics = {"root": 8}

        def init(self):
            self.k.store(self.static("root"), self.k.kmalloc(96))
            self.lost = self.k.kmalloc(48)
            return 0
''')


def test_module_file_is_reimported_only_if_unchanged(tmp_path: Path) -> None:
    mod = tmp_path / "keeper.py"
    mod.write_text(MODULE_SOURCE)
    k = Kernel()
    k.insmod(mod)
    k.sleep(10)
    save = tmp_path / "k.kmemsim"
    k.save(save)
    k2 = Kernel.load(save)  # imported by this process already: the same class
    assert type(k2.modules["keeper"].instance) is type(k.modules["keeper"].instance)
    assert go_on(k2) == go_on(k)
    head, _, _ = split(save.read_bytes())
    assert [Path(m["path"]).name for m in head["module_files"]] == ["keeper.py"]

    # a fresh interpreter must be told to trust the file, and only runs it if unchanged
    script = textwrap.dedent(f'''
        import sys
        from kmemsim import Kernel
        from kmemsim.errors import KmemsimFormatError
        try:
            Kernel.load({str(save)!r})
        except KmemsimFormatError as e:
            print("refused:", "module_files" in str(e))
        k = Kernel.load({str(save)!r}, module_files=[{str(mod)!r}])
        k.rmmod("keeper")
        print(k.addr2line("keeper_init+0x19"))
    ''')
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.splitlines() == ["refused: True", f"{mod}:9"]  # the store line

    mod.write_text(MODULE_SOURCE + "\n# edited\n")
    with pytest.raises(KmemsimFormatError, match="changed since the save"):
        Kernel.load(save)
    k.save(tmp_path / "comment-only.kmemsim")  # the same code: saving is still fine
    mod.write_text(MODULE_SOURCE.replace("kmalloc(48)", "kmalloc(64)"))
    with pytest.raises(KmemsimValueError, match="changed since it was loaded"):
        k.save(tmp_path / "other.kmemsim")  # the file no longer holds the loaded code
    assert not (tmp_path / "other.kmemsim").exists()
    marker = tmp_path / "ran"
    mod.write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(KmemsimFormatError):
        Kernel.load(save, module_files=[mod])
    assert not marker.exists()

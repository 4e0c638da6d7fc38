"""Determinism (issue 8): the same seed gives the same bytes, reports and verdicts in any
process, under any string-hash seed, on any executor and whatever the wall clock says."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from kmemsim import Kernel

#: Prints everything a user of kmemsim could publish: the article demo on every
#: architecture, gallery scenarios with their verdicts, a random heap and its
#: judgement, the report formats, and the bytes of a save.
SCENARIO = textwrap.dedent('''
    import hashlib, io, random
    from kmemsim import Kernel
    from kmemsim.demo import run_demo
    from kmemsim.persist import dumps
    from kmemsim.truth import judge
    from kmemsim.workloads.gallery import GALLERY

    def verdicts(k):
        j = judge(k)
        return str(j) + "\\n" + "\\n".join(str(j.verdicts[p]) for p in sorted(j.verdicts))

    def random_heap(arch, seed):
        rng = random.Random(seed)
        k = Kernel(arch=arch, seed=seed, cmdline="slub_debug=P")
        root = k.define_static("heap_root", 8 * k.arch.word_size)
        blocks, free = [], {}
        for i in range(120):
            if i % 17 == 0:
                p, free[p] = (p := k.vmalloc(rng.randrange(1, 9000))), k.vfree
            else:
                p, free[p] = (p := k.kmalloc(rng.randrange(1, 700))), k.kfree
            blocks.append(p)
            if len(blocks) > 1 and rng.random() < 0.7:
                k.store(rng.choice(blocks[:-1]), blocks[-1])
            if rng.random() < 0.1:
                k.store(root + k.arch.word_size * rng.randrange(8), blocks[-1])
            if rng.random() < 0.1 and len(blocks) > 3:
                q = blocks.pop(rng.randrange(len(blocks) - 1))
                free.pop(q)(q)
        k.sleep(6)
        k.write("/sys/kernel/debug/kmemleak", "scan")
        k.write("/sys/kernel/debug/kmemleak", "scan")
        return k

    out = []
    for arch in ("x86_64", "arm64", "i386"):
        buf = io.StringIO()
        run_demo(buf, arch=arch, narrate=False)
        out.append(buf.getvalue())
    for name in ("xor_linked_list", "stale_stack_slot", "leaked_tree", "transient_leak_pending"):
        o = GALLERY[name].run(arch="arm64" if name == "leaked_tree" else None, seed=3)
        out += [o.kernel.read("/sys/kernel/debug/kmemleak"), verdicts(o.kernel), str(o.mismatches())]
    for arch in ("x86_64", "i386"):
        k = random_heap(arch, 11)
        out += [k.read("/sys/kernel/debug/kmemleak"), k.dmesg(), verdicts(k)]
        out.append(hashlib.sha256(dumps(k)).hexdigest())
    for fmt in ("6.6", "4.15"):
        k = Kernel(report_format=fmt, seed=5, cmdline="slub_debug=P")
        k.modprobe("article_leak"); k.sleep(10)
        k.write("/sys/kernel/debug/kmemleak", "scan"); k.sleep(5)
        k.write("/sys/kernel/debug/kmemleak", "scan")
        out.append(k.read("/sys/kernel/debug/kmemleak"))
    print("\\n=====\\n".join(out))
''')

#: Run first in the child: every clock reads nonsense that moves by large strides.
WEIRD_CLOCKS = textwrap.dedent('''
    import itertools, time
    _tick = itertools.count(1)
    def _weird(base):
        return lambda: base + next(_tick) * 1234.5678
    time.time = _weird(4.0e9)
    time.monotonic = _weird(-7.0e5)
    time.perf_counter = _weird(1.0e12)
    time.process_time = _weird(42.0)
    time.time_ns = lambda: int(time.time() * 1e9)
    time.monotonic_ns = lambda: int(time.monotonic() * 1e9)
    time.perf_counter_ns = lambda: int(time.perf_counter() * 1e9)
''')


#: Run first in the child: the global random generators are seeded and used up.
GLOBAL_RANDOM = textwrap.dedent('''
    import random
    import numpy
    random.seed(31337); random.random()
    numpy.random.seed(4242); numpy.random.random(7)
''')


def run_fresh(code: str, hashseed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def reference_output() -> str:
    return run_fresh(SCENARIO, "0")


def test_two_fresh_interpreters_print_the_same(reference_output: str) -> None:
    assert reference_output.count("\n=====\n") == 3 + 3 * 4 + 2 * 4 + 2 - 1
    assert "unreferenced object" in reference_output
    assert run_fresh(SCENARIO, "4242") == reference_output


def test_wall_clock_does_not_reach_results(reference_output: str) -> None:
    assert run_fresh(WEIRD_CLOCKS + SCENARIO, "987") == reference_output


def test_a_thread_executor_gives_the_same_bytes(reference_output: str) -> None:
    def scenario() -> str:
        buf = io.StringIO()
        saved, sys.stdout = sys.stdout, buf
        try:
            exec(compile(SCENARIO, "<scenario>", "exec"), {"__name__": "scenario"})
        finally:
            sys.stdout = saved
        return buf.getvalue()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(scenario).result() == reference_output


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_fast_and_reference_engines_print_the_same(arch: str) -> None:
    texts = []
    for engine in ("fast", "reference"):
        k = Kernel(arch=arch, cmdline="slub_debug=P", seed=2)
        k.kmemleak.default_engine = engine
        k.modprobe("article_leak")
        k.sleep(10)
        k.write("/sys/kernel/debug/kmemleak", "scan")
        k.sleep(5)
        k.write("/sys/kernel/debug/kmemleak", "scan")
        first = k.read("/sys/kernel/debug/kmemleak")
        k.rmmod("article_leak")
        for _ in range(2):
            k.sleep(5)
            k.write("/sys/kernel/debug/kmemleak", "scan")
        k.sleep(120)  # and two scans of the scan thread
        texts.append((first, k.read("/sys/kernel/debug/kmemleak"), k.dmesg()))
    assert texts[0] == texts[1]
    assert texts[0][0].count("unreferenced object") == 13


def test_global_random_state_does_not_reach_results(reference_output: str) -> None:
    assert run_fresh(GLOBAL_RANDOM + SCENARIO, "5") == reference_output

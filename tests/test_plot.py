"""``kmemsim.plot``: what each figure draws, checked on the returned Axes (Agg backend).

Heaps are hand-built so that every verdict kind, scan state and series value
is known in advance; the assertions read the artists back (colours, counts,
data, labels) rather than only rendering.
"""

from __future__ import annotations

import io
import itertools
import math
import subprocess
import sys
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from kmemsim import Kernel, KmemsimTypeError, KmemsimValueError
from kmemsim.plot import (
    SCAN_STATE_COLORS,
    VERDICT_COLORS,
    draw_scan_step,
    meminfo_series,
    memory_map,
    parse_meminfo,
    parse_slabinfo,
    rates,
    sample_proc,
    scan_animation,
    scan_frames,
    slabinfo_series,
)
from kmemsim.truth import Xor, judge

NO_AUTO_SCAN = {"CONFIG_DEBUG_KMEMLEAK_AUTO_SCAN": False}


@pytest.fixture(autouse=True)
def _no_show_and_close(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Any ``plt.show()`` inside kmemsim.plot fails the test; figures are closed after."""
    def show(*args: object, **kwargs: object) -> None:
        raise AssertionError("kmemsim.plot must not call plt.show()")

    monkeypatch.setattr(plt, "show", show)
    yield
    plt.close("all")


def render(ax: Axes) -> None:
    ax.figure.savefig(io.BytesIO(), format="png")


def test_import_does_not_import_pyplot() -> None:
    code = ("import sys, kmemsim, kmemsim.plot; "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ memory map
def mixed_heap() -> tuple[Kernel, dict[str, int]]:
    """One object of each verdict kind, plus the article's leaks and a per-CPU leak."""
    k = Kernel(config=NO_AUTO_SCAN)
    k.modprobe("article_leak")                            # 8 kmalloc + 5 vmalloc true positives
    hidden, plain, fake = (k.define_static(n, 8) for n in ("pl_hidden", "pl_plain", "pl_fake"))
    fp = k.kzalloc(64)
    k.store(hidden, fp, encoding=Xor(key=0x5A))           # reachable, invisible: false positive
    tn = k.kzalloc(64)
    k.store(plain, tn)                                    # true negative
    fn = k.kzalloc(64)
    k.memory.write_word(fake, fn)                         # an integer that looks like a pointer
    pcpu = k.alloc_percpu(32)                             # dropped: a per-CPU leak
    k.sleep(6)
    k.kmemleak.scan()
    k.kmemleak.scan()
    young = k.kzalloc(64)                                 # created now: too young
    k.kmemleak.scan()
    return k, {"fp": fp, "tn": tn, "fn": fn, "pcpu": pcpu, "young": young}


def test_memory_map_colours_every_object_by_its_verdict() -> None:
    k, objs = mixed_heap()
    j = judge(k)
    assert {j[objs["fp"]].kind, j[objs["fn"]].kind, j[objs["young"]].kind} == {
        "false positive", "false negative", "pending"}
    ax = memory_map(k, j)
    assert isinstance(ax, Axes)
    colours = Counter(to_hex(c) for coll in ax.collections for c in coll.get_facecolors())
    expected = Counter(VERDICT_COLORS[v.kind] for v in j)
    assert colours == expected
    assert sum(colours.values()) == len(k.kmemleak.objects())
    regions = [t.get_text().split("\n")[0] for t in ax.get_yticklabels()]
    assert regions == ["slab", "vmalloc", "percpu", "memblock", "kernel data"]
    assert len(ax.collections) == len(regions)
    assert [c.get_label() for c in ax.collections] == regions
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["true positive", "false positive", "false negative", "true negative",
                      "pending"]
    assert ax.get_xlabel().endswith("(% of its tracked bytes)")
    assert ax.get_ylabel() == "region"
    render(ax)


def test_memory_map_strips_follow_address_order_and_width() -> None:
    k, _ = mixed_heap()
    ax = memory_map(k, width="object")
    percpu = next(c for c in ax.collections if c.get_label() == "percpu")
    slab = next(c for c in ax.collections if c.get_label() == "slab")
    # one per-CPU object fills its strip; slab boxes share the strip equally
    assert [round(p.get_extents().width, 6) for p in percpu.get_paths()] == [100.0]
    widths = {round(p.get_extents().width, 6) for p in slab.get_paths()}
    assert len(widths) == 1
    assert "objects)" in ax.get_xlabel()
    # by size: the 4096-byte article leaks are wider than the 32-byte ones
    ax = memory_map(k, width="size")
    slab = next(c for c in ax.collections if c.get_label() == "slab")
    sizes = sorted({round(p.get_extents().width, 3) for p in slab.get_paths()})
    assert sizes[-1] > 100 * sizes[0]


def test_memory_map_uses_the_given_axes_and_validates() -> None:
    k, _ = mixed_heap()
    fig, ax = plt.subplots()
    assert memory_map(k, ax=ax) is ax
    assert len(fig.axes) == 1
    with pytest.raises(KmemsimValueError, match="width"):
        memory_map(k, width="bytes")


def test_memory_map_skips_objects_created_after_the_judgement() -> None:
    k, _ = mixed_heap()
    j = judge(k)
    k.kzalloc(64)
    ax = memory_map(k, j)
    assert sum(len(c.get_paths()) for c in ax.collections) == len(j)


# ------------------------------------------------------------------ scan steps
def chain_heap() -> tuple[Kernel, dict[int, str]]:
    """.bss root -> a -> b -> c; d <-> e, a leaked cycle; lost, a leak."""
    k = Kernel(config=NO_AUTO_SCAN)
    root = k.define_static("pl_root", 8)
    a, b, c, d, e, lost = (k.kzalloc(32) for _ in range(6))
    k.store(root, a)
    k.store(a, b)
    k.store(b, c)
    k.store(d, e)
    k.store(e, d)
    k.sleep(6)
    return k, {root: ".bss", a: "a", b: "b", c: "c", d: "d", e: "e", lost: "lost"}


def test_scan_frames_follow_the_gray_list() -> None:
    k, names = chain_heap()
    k.kmemleak.scan()          # records the checksums, so the next scan reports the cycle
    frames = scan_frames(k, list(names), labels=names)
    idx = {name: frames.labels.index(name) for name in names.values()}
    assert list(frames.pointers) == sorted(frames.pointers)
    first = frames[0]
    assert first.event == "start"
    assert first.gray_list == (idx[".bss"],)              # kernel .bss: min_count 0
    assert all(first.states[idx[n]] == "white" for n in "abcde")
    grayed = [frames.labels[f.subject] for f in frames if f.event == "gray"]
    scanned = [frames.labels[f.subject] for f in frames if f.event == "scan_object"]
    assert grayed == ["a", "b", "c"]
    assert scanned == [".bss", "a", "b", "c"]
    # the gray list is FIFO: an object is scanned only after everything queued before it
    for f in frames:
        if f.event == "gray":
            assert f.gray_list[-1] == f.subject
    last = frames[-1]
    assert last.event == "report"
    assert sorted(frames.labels[i] for i in last.reported) == ["d", "e", "lost"]
    assert [last.states[idx[n]] for n in (".bss", "a", "b", "c", "d", "e", "lost")] == [
        "gray, scanned"] * 4 + ["white"] * 3
    assert last.gray_list == ()
    # the frames end where the scan ended: the same colours kmemleak keeps
    colour = {r.pointer: r.color for r in k.kmemleak.objects()}
    for ptr, state in zip(frames.pointers, last.states, strict=True):
        assert state.split(",")[0] == colour[ptr]


def test_scan_frames_report_what_the_fast_engine_reports() -> None:
    reported = []
    for record in (True, False):
        k, names = chain_heap()
        k.kmemleak.scan()
        result = scan_frames(k).result if record else k.kmemleak.scan(engine="fast")
        reported.append(sorted(names[r.pointer] for r in result.unreferenced if r.pointer in names))
    assert reported[0] == reported[1] == ["d", "e", "lost"]


def test_scan_frames_checksum_pass_spares_changed_objects() -> None:
    k, names = chain_heap()
    frames = scan_frames(k, list(names), labels=names)    # first scan: d and e changed
    modified = [frames.labels[f.subject] for f in frames if f.event == "modified"]
    assert modified == ["d", "e"]
    assert [frames.labels[i] for i in frames[-1].reported] == ["lost"]
    assert [f.phase for f in frames if f.event == "phase"] == ["scan_gray_list", "checksum"]


def test_scan_frames_rejects_untracked_pointers() -> None:
    k, _ = chain_heap()
    with pytest.raises(KmemsimValueError, match="pointers"):
        scan_frames(k, [0x1234])


def test_draw_scan_step_draws_objects_and_gray_list() -> None:
    k, names = chain_heap()
    frames = scan_frames(k, list(names), labels=names)
    step = next(i for i, f in enumerate(frames) if f.event == "gray"
                and frames.labels[f.subject] == "b")
    frame = frames[step]
    ax = draw_scan_step(frames, step)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == len(frames.pointers) + len(frame.gray_list)
    top = sorted((b for b in boxes if b.get_y() > 1), key=lambda b: b.get_x())
    assert [to_hex(b.get_facecolor()) for b in top] == [
        SCAN_STATE_COLORS[s] for s in frame.states]
    assert to_hex(top[frame.subject].get_edgecolor()) == "#1f77b4"
    bottom = [b for b in boxes if b.get_y() < 1]
    assert len(bottom) == len(frame.gray_list) == 1
    texts = [t.get_text() for t in ax.texts]
    assert texts[:len(frames.labels)] == list(frames.labels)
    assert "b reached min_count" in ax.get_title()
    assert ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "gray list\n(head at left)", "tracked\nobjects"]
    # the same Axes redrawn shows the next step only
    draw_scan_step(frames, step + 1, ax=ax)
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == len(frames.pointers) + len(
        frames[step + 1].gray_list)
    render(ax)
    with pytest.raises(KmemsimValueError, match="step"):
        draw_scan_step(frames, len(frames))
    with pytest.raises(KmemsimTypeError, match="step"):
        draw_scan_step(frames, 1.0)  # type: ignore[arg-type]


def test_draw_scan_step_outlines_reported_objects() -> None:
    k, names = chain_heap()
    frames = scan_frames(k, list(names), labels=names)
    ax = draw_scan_step(frames, -1)
    top = sorted((b for b in ax.patches if b.get_y() > 1), key=lambda b: b.get_x())
    red = [frames.labels[i] for i, b in enumerate(top) if to_hex(b.get_edgecolor()) == "#d62728"]
    assert red == ["lost"]


def test_scan_animation_has_one_frame_per_step() -> None:
    k, names = chain_heap()
    frames = scan_frames(k, list(names), labels=names)
    anim = scan_animation(frames, interval=100)
    assert isinstance(anim, FuncAnimation)
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == len(frames)
    with pytest.raises(KmemsimValueError, match="interval"):
        scan_animation(frames, interval=0)


# ------------------------------------------------------------------ rates
ROWS = [
    {"share": s, "encoding": enc, "fp_rate": r, "fp_rate_lo": r - 0.05, "fp_rate_hi": r + 0.05}
    for enc, scale in (("xor", 1.0), ("pfn", 0.5))
    for s, r in ((0.5, 0.5 * scale), (0.1, 0.1 * scale), (0.2, 0.2 * scale))
]


def test_rates_numeric_lines_sorted_with_bands() -> None:
    ax = rates(ROWS, x="share", y="fp_rate", hue="encoding",
               xlabel="share of references encoded (fraction)", ylabel="false-positive rate")
    assert len(ax.lines) == 2
    assert [float(v) for v in ax.lines[0].get_xdata()] == [0.1, 0.2, 0.5]
    assert [float(v) for v in ax.lines[1].get_ydata()] == [0.05, 0.1, 0.25]
    assert len(ax.collections) == 2                         # one band per line
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.05)          # lowest lower bound, xor
    assert band[:, 1].max() == pytest.approx(0.55)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "encoding = xor", "encoding = pfn"]
    assert ax.get_xlabel() == "share of references encoded (fraction)"
    assert ax.get_ylabel() == "false-positive rate"
    render(ax)


def test_rates_logx_labels_the_swept_values() -> None:
    rows = [{"period": p, "scans": 2.0, "scans_lo": 1.5, "scans_hi": 2.5}
            for p in (1.0, 60.0, 600.0)]
    ax = rates(rows, x="period", y="scans", logx=True, xlabel="scan period (s)")
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "60", "600"]


def test_rates_categorical_x_gives_error_bars() -> None:
    rows = [r for r in ROWS if r["share"] == 0.5]
    ax = rates(rows, x="encoding", y="fp_rate", logx=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["xor", "pfn"]
    assert len(ax.containers) == 1
    (bars,) = ax.containers
    assert [float(v) for v in bars.lines[0].get_ydata()] == [0.5, 0.25]
    assert ax.get_xscale() == "linear"                     # logx ignored for categories
    assert ax.get_ylabel() == "fp rate (fraction)"


def test_rates_tolerate_bounds_rounded_past_the_rate() -> None:
    """A Wilson bound of 0.9999999999999999 beside a rate of 1.0 must not break errorbar."""
    rows = [{"tool": "a", "recall": 1.0, "recall_lo": 0.8, "recall_hi": 1.0 - 1e-16},
            {"tool": "b", "recall": math.nan, "recall_lo": 0.0, "recall_hi": 1.0}]
    ax = rates(rows, x="tool", y="recall")
    (bars,) = ax.containers
    segments = bars.lines[2][0].get_segments()
    assert segments[0][1][1] == pytest.approx(1.0)       # upper end clipped to the rate


def test_rates_validates_columns() -> None:
    with pytest.raises(KmemsimValueError, match="fp_rate_lo"):
        rates([{"share": 1, "fp_rate": 0.1}], x="share", y="fp_rate")
    with pytest.raises(KmemsimValueError, match="rows"):
        rates([], x="share", y="fp_rate")


# ------------------------------------------------------------------ /proc series
def test_parse_meminfo_and_slabinfo_read_the_kernel_files() -> None:
    k = Kernel()
    mi = parse_meminfo(k.read("/proc/meminfo"))
    assert mi["MemTotal"] > mi["MemFree"] > 0
    assert "HugePages_Total" in mi
    si = parse_slabinfo(k.read("/proc/slabinfo"))
    assert si["kmalloc-1k"]["objsize"] == 1024
    assert set(si["kmalloc-32"]) == {"active_objs", "num_objs", "objsize", "objperslab",
                                     "pagesperslab", "active_slabs", "num_slabs"}


def test_sample_proc_follows_a_slow_leak() -> None:
    k = Kernel(config=NO_AUTO_SCAN)
    k.modprobe("slow_leak")
    samples = sample_proc(k, seconds=30, every=5, fields=("MemFree", "Slab"),
                          caches=("kmalloc-1k", "no-such-cache"))
    assert len(samples) == 7
    assert [s["uptime"] - samples[0]["uptime"] for s in samples] == [0, 5, 10, 15, 20, 25, 30]
    slab = [s["Slab"] for s in samples]
    free = [s["MemFree"] for s in samples]
    assert all(b > a for a, b in itertools.pairwise(slab))
    assert all(b < a for a, b in itertools.pairwise(free))
    # 4 KiB a second for 30 s: Slab grows by at least 120 kB (slabs come in whole pages)
    assert slab[-1] - slab[0] >= 120
    assert samples[-1]["slabinfo:kmalloc-1k"] >= 4 * 30
    assert samples[-1]["slabinfo:no-such-cache"] == 0

    ax = meminfo_series(samples)
    assert [line.get_label() for line in ax.lines] == ["MemFree", "Slab"]
    assert [float(v) for v in ax.lines[1].get_ydata()] == [v - slab[0] for v in slab]
    assert ax.get_xlabel() == "uptime (s)"
    assert ax.get_ylabel() == "change since the first sample (kB)"
    ax = meminfo_series(samples, fields=["Slab"], relative=False)
    assert [float(v) for v in ax.lines[0].get_ydata()] == slab
    assert ax.get_ylabel() == "kB"
    ax = slabinfo_series(samples)
    assert [line.get_label() for line in ax.lines] == ["kmalloc-1k", "no-such-cache"]
    assert ax.get_ylabel() == "active objects"
    render(ax)


def test_sample_proc_validates() -> None:
    k = Kernel()
    with pytest.raises(KmemsimValueError, match="every"):
        sample_proc(k, 10, every=0)
    with pytest.raises(KmemsimTypeError, match="seconds"):
        sample_proc(k, "10")  # type: ignore[arg-type]
    with pytest.raises(KmemsimValueError, match="fields"):
        sample_proc(k, 1, fields=("NoSuchField",))
    with pytest.raises(KmemsimValueError, match="samples"):
        meminfo_series([])
    with pytest.raises(KmemsimValueError, match="Slab"):
        meminfo_series([{"uptime": 0.0}], fields=["Slab"])

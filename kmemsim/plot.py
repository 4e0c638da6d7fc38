"""Matplotlib figures: memory maps, the scan step by step, rates, /proc time series.

Every function takes ``ax=None`` (or ``fig=None``) and returns the Axes (or
Figure, or animation) it drew on; none calls ``plt.show()`` or changes
``rcParams``.  ``matplotlib.pyplot`` is imported inside the functions, so
``import kmemsim.plot`` is cheap and works headless.

* :func:`memory_map`: every tracked object as a box on one strip per region
  (slab, vmalloc, pages, percpu, memblock, kernel data), coloured by the
  truth's verdict (:func:`kmemsim.truth.judge`).
* :func:`scan_frames`, :func:`draw_scan_step`, :func:`scan_animation`: one
  reference scan recorded event by event (whiten, roots, the gray list
  draining, the checksum pass, the report) and drawn frame by frame.
* :func:`rates`: a rate with its confidence interval against a swept
  parameter, one line per ``hue`` value.
* :func:`sample_proc`, :func:`meminfo_series`, :func:`slabinfo_series`:
  ``/proc/meminfo`` and ``/proc/slabinfo`` sampled as simulated time passes.

>>> from kmemsim import Kernel
>>> k = Kernel()
>>> k.modprobe("slow_leak")                     # loses 4 x 1024 bytes a second
>>> samples = sample_proc(k, seconds=20, every=10, fields=("Slab",))
>>> [(s["uptime"], s["Slab"]) for s in samples]   # seconds since boot, kB
[(1.5, 20.0), (11.5, 80.0), (21.5, 120.0)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import KmemsimTypeError, KmemsimValueError

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .kernel import Kernel
    from .kmemleak.hooks import ObjectRecord
    from .kmemleak.scan import ScanResult
    from .truth.judge import Verdict

__all__ = [
    "REGIONS",
    "SCAN_STATES",
    "SCAN_STATE_COLORS",
    "VERDICT_COLORS",
    "ScanFrame",
    "ScanFrames",
    "draw_scan_step",
    "meminfo_series",
    "memory_map",
    "object_region",
    "parse_meminfo",
    "parse_slabinfo",
    "rates",
    "sample_proc",
    "scan_animation",
    "scan_frames",
    "slabinfo_series",
]

#: Fill colour of each verdict kind of :func:`kmemsim.truth.judge`.
VERDICT_COLORS: dict[str, str] = {
    "true positive": "#d62728",
    "false positive": "#ff7f0e",
    "false negative": "#9467bd",
    "true negative": "#a6d8a0",
    "pending": "#e7ba52",
}

#: The strips of :func:`memory_map`, top to bottom.  Module memory comes from
#: the module area through the vmalloc machinery, so it sits on the vmalloc
#: strip; ``kmalloc`` blocks too large for a slab cache come straight from the
#: page allocator (``pages``); memblock objects are tracked by physical address.
REGIONS: tuple[str, ...] = ("slab", "vmalloc", "pages", "percpu", "memblock", "kernel data")

_BLOCK_REGION = {
    "slab": "slab",
    "kmalloc_large": "pages",
    "pages": "pages",
    "vmalloc": "vmalloc",
    "module": "vmalloc",
    "module_text": "vmalloc",
    "percpu": "percpu",
    "memblock": "memblock",
}

# Scan-step states.  kmemleak's colours are white, gray and black (spec
# section 5); a gray object is first queued on the gray list, then scanned.
WHITE = "white"
QUEUED = "gray, on the gray list"
SCANNED = "gray, scanned"
BLACK = "black"
#: The states an object goes through in :func:`scan_frames`, in drawing order.
SCAN_STATES: tuple[str, ...] = (WHITE, QUEUED, SCANNED, BLACK)
#: Fill colour of each scan state.
SCAN_STATE_COLORS: dict[str, str] = {
    WHITE: "#ffffff",
    QUEUED: "#c8c8c8",
    SCANNED: "#7a7a7a",
    BLACK: "#000000",
}
_REPORTED_EDGE = "#d62728"
_CURRENT_EDGE = "#1f77b4"


def _new_axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots()
    return new


# ------------------------------------------------------------------ memory map
def object_region(k: Kernel, record: ObjectRecord) -> str:
    """The :data:`REGIONS` strip a tracked object belongs to (``"other"`` if none).

    >>> from kmemsim import Kernel
    >>> k = Kernel()
    >>> p = k.kmalloc(64)
    >>> object_region(k, k.kmemleak.record(k.kmemleak.find(p)))
    'slab'
    """
    if record.tree == "phys":
        return "memblock"
    if record.tree == "percpu":
        return "percpu"
    addr = k.arch.untag(record.pointer)
    block = k.truth.blocks.get(addr) or k.truth.block_at(addr)
    if block is not None:
        return _BLOCK_REGION.get(block.kind, "other")
    if k.kernel_data_start <= addr < k.kernel_data_end:
        return "kernel data"
    return "other"


def memory_map(k: Kernel, verdicts: Mapping[int, Verdict] | Iterable[Verdict] | None = None,
               ax: Axes | None = None, *, width: str = "size") -> Axes:
    """Every tracked object as a box on its region's strip, coloured by verdict.

    *verdicts* is a :class:`~kmemsim.truth.Judgement` (or any mapping or
    iterable of :class:`~kmemsim.truth.Verdict`); ``None`` judges *k* now
    (judge right after a scan).  Objects are laid out in address order;
    *width* ``"size"`` makes each box as wide as its bytes, ``"object"``
    gives every object the same width.  Each strip is scaled to its own
    total, so a region of a few small objects stays readable; the strip's
    label gives its object count and bytes.  Colours: :data:`VERDICT_COLORS`.

    Runtime complexity: ``O(n log n)`` in the number of tracked objects.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from kmemsim import Kernel
    >>> k = Kernel(); k.modprobe("article_leak"); k.sleep(6)
    >>> _ = k.kmemleak.scan()
    >>> ax = memory_map(k)
    >>> [t.get_text().split("\\n")[0] for t in ax.get_yticklabels()]
    ['slab', 'vmalloc', 'memblock', 'kernel data']
    """
    if width not in ("size", "object"):
        raise KmemsimValueError(f"width must be 'size' or 'object', got {width!r}")
    if verdicts is None:
        from .truth import judge

        verdicts = judge(k)
    by_ptr: dict[int, Verdict] = (
        dict(verdicts.items()) if isinstance(verdicts, Mapping)
        else {v.pointer: v for v in verdicts})
    from matplotlib.patches import Patch

    ax = _new_axes(ax)
    strips: dict[str, list[tuple[int, int, str]]] = {}
    for rec in k.kmemleak.objects():
        v = by_ptr.get(rec.pointer)
        if v is None:
            continue  # created after the judgement
        strips.setdefault(object_region(k, rec), []).append((rec.pointer, rec.size, v.kind))
    order = [r for r in (*REGIONS, "other") if r in strips]
    labels = []
    for row, region in enumerate(order):
        objs = sorted(strips[region])
        weights = [max(size, 1) if width == "size" else 1 for _, size, _ in objs]
        total = float(sum(weights))
        bars, x = [], 0.0
        for w in weights:
            bars.append((100.0 * x / total, 100.0 * w / total))
            x += w
        y = len(order) - 1 - row
        ax.broken_barh(bars, (y - 0.4, 0.8),
                       facecolors=[VERDICT_COLORS.get(kind, "#dddddd") for *_, kind in objs],
                       edgecolors="white", linewidths=0.3, label=region)
        nbytes = sum(size for _, size, _ in objs)
        noun = "object" if len(objs) == 1 else "objects"
        labels.append((y, f"{region}\n{len(objs)} {noun}, {_human_bytes(nbytes)}"))
    if labels:
        ys, texts = zip(*labels, strict=True)
        ax.set_yticks(list(ys), list(texts))
        ax.set_ylim(-0.6, len(order) - 0.4)
    else:
        ax.text(0.5, 0.5, "no tracked objects judged", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlim(0, 100)
    ax.set_xlabel("position in the region, in address order (% of its tracked "
                  + ("bytes)" if width == "size" else "objects)"))
    ax.set_ylabel("region")
    present = {kind for objs in strips.values() for *_, kind in objs}
    ax.legend(handles=[Patch(facecolor=c, edgecolor="0.5", label=kind)
                       for kind, c in VERDICT_COLORS.items() if kind in present],
              loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=5, fontsize="small",
              frameon=False)
    ax.set_title("kmemleak's answer against the truth, by region")
    return ax


def _human_bytes(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------ scan steps
@dataclass(frozen=True, slots=True)
class ScanFrame:
    """The shown objects' states after one event of a scan.

    ``states[i]`` is the state (:data:`SCAN_STATES`) of object ``i`` of the
    :class:`ScanFrames`; ``gray_list`` holds object indexes, head first;
    ``reported`` the indexes the scan reported (set in the last frame).
    """

    phase: str
    event: str
    subject: int | None
    """Index of the object the event is about, or ``None`` for a phase change."""
    states: tuple[str, ...]
    gray_list: tuple[int, ...]
    reported: tuple[int, ...] = ()

    def describe(self, labels: Sequence[str]) -> str:
        """One line saying what happened in this frame."""
        who = labels[self.subject] if self.subject is not None else ""
        return {
            "start": "whitened: count = 0 everywhere; min_count 0 objects start gray",
            "phase": f"phase: {self.phase}",
            "gray": f"{who} reached min_count: gray, appended to the gray list",
            "scan_object": f"{who} taken from the gray list and scanned",
            "modified": f"{who} changed since the last scan: grayed by the checksum pass",
            "report": f"report: {len(self.reported)} white object(s) listed as leaks",
        }.get(self.event, self.event)


@dataclass(frozen=True)
class ScanFrames:
    """A recorded scan: the shown objects (address order), their labels and the frames."""

    pointers: tuple[int, ...]
    sizes: tuple[int, ...]
    labels: tuple[str, ...]
    frames: tuple[ScanFrame, ...]
    result: ScanResult

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> ScanFrame:
        return self.frames[i]

    def __iter__(self) -> Iterator[ScanFrame]:
        return iter(self.frames)


class _Recorder:
    """The observer: keeps every object's state and the gray list, emits frames."""

    def __init__(self, k: Kernel, shown: dict[int, int]) -> None:
        self.k = k
        self.shown = shown  # pointer -> index in ScanFrames.pointers
        self.state: dict[int, str] = {}
        self.queue: deque[int] = deque()
        self.phase = "whiten"
        self.frames: list[ScanFrame] = []

    def snapshot(self, event: str, pointer: int | None,
                 reported: tuple[int, ...] = ()) -> None:
        n = len(self.shown)
        states = [WHITE] * n
        for ptr, i in self.shown.items():
            states[i] = self.state.get(ptr, WHITE)
        gray = tuple(self.shown[p] for p in self.queue if p in self.shown)
        subject = self.shown.get(pointer) if pointer is not None else None
        self.frames.append(ScanFrame(self.phase, event, subject, tuple(states), gray, reported))

    def __call__(self, event: str, payload: object) -> None:
        if event == "phase":
            self.phase = str(payload)
            if self.phase == "whiten":
                return  # nothing to draw before whitening: the first frame follows it
            if self.phase == "roots":
                # whiten() has run: read the colours it left (counts reset, the
                # initial gray list in object_list order, phys objects painted black)
                for rec in self.k.kmemleak.objects():
                    if rec.color == "black":
                        self.state[rec.pointer] = BLACK
                    elif rec.color == "gray":
                        self.state[rec.pointer] = QUEUED
                        self.queue.append(rec.pointer)
                    else:
                        self.state[rec.pointer] = WHITE
                self.snapshot("start", None)
            elif self.phase == "report":
                self.drain()
            else:
                self.snapshot("phase", None)
            return
        ptr = int(getattr(payload, "pointer"))  # noqa: B009 -- payload is kmemleak's object
        if event in ("gray", "modified"):
            self.state[ptr] = QUEUED
            self.queue.append(ptr)
        elif event == "scan_object":
            # the gray list is FIFO: objects ahead of this one were popped without
            # a scan (not allocated any more, or OBJECT_NO_SCAN)
            while self.queue:
                head = self.queue.popleft()
                self.state[head] = SCANNED
                if head == ptr:
                    break
        if ptr in self.shown:
            self.snapshot(event, ptr)

    def drain(self) -> None:
        while self.queue:
            self.state[self.queue.popleft()] = SCANNED


def scan_frames(k: Kernel, pointers: Iterable[int] | None = None, *,
                labels: Mapping[int, str] | None = None) -> ScanFrames:
    """Run one reference scan of *k* now, recording a frame at each event.

    This is a real scan (``k.kmemleak.scan(engine="reference", observer=...)``):
    it updates counts, checksums and ``OBJECT_REPORTED`` like any other.
    Frames follow the kernel's phases: the start (after whitening), each
    object turning gray and joining the gray list, each object taken from the
    list and scanned, the checksum pass graying changed objects, and the
    report.  *pointers* restricts the drawing to some objects (all are still
    scanned; events about the others make no frame); an address inside an
    object (a static in ``.bss``) stands for that object.  *labels* names
    the objects, keyed by the addresses given.

    >>> from kmemsim import Kernel
    >>> k = Kernel()
    >>> root = k.define_static("root", 8)
    >>> a = k.kzalloc(32); b = k.kzalloc(32); lost = k.kzalloc(32)
    >>> k.store(root, a); k.store(a, b)
    >>> k.sleep(6)
    >>> frames = scan_frames(k, [a, b, lost], labels={a: "a", b: "b", lost: "lost"})
    >>> for f in frames[:4]: print(f.describe(frames.labels))
    whitened: count = 0 everywhere; min_count 0 objects start gray
    phase: scan_gray_list
    a reached min_count: gray, appended to the gray list
    a taken from the gray list and scanned
    >>> [frames.labels[i] for i in frames[-1].reported], frames[-1].states[2]
    (['lost'], 'white')
    """
    recs = k.kmemleak.objects()
    names_of: dict[int, str] = {}
    if pointers is None:
        chosen = recs
    else:
        # an address inside an object (a static in .bss, a list_head member) stands for it
        starts: dict[int, int] = {}
        for p in pointers:
            obj = k.kmemleak.find(p)
            if obj is None:
                raise KmemsimValueError(f"pointers: {p:#x} is not inside a tracked object")
            starts[obj.pointer] = p
            if labels and p in labels:
                names_of[obj.pointer] = labels[p]
        chosen = [r for r in recs if r.pointer in starts]
    for r in chosen:
        if labels and r.pointer in labels:
            names_of[r.pointer] = labels[r.pointer]
    chosen = sorted(chosen, key=lambda r: r.pointer)
    shown = {r.pointer: i for i, r in enumerate(chosen)}
    names = tuple(names_of.get(r.pointer, f"…{r.pointer & 0xffff:04x}") for r in chosen)
    rec = _Recorder(k, shown)
    result = k.kmemleak.scan(engine="reference", observer=rec)
    reported = tuple(sorted(shown[r.pointer] for r in result.unreferenced
                            if r.pointer in shown))
    rec.snapshot("report", None, reported)
    return ScanFrames(tuple(r.pointer for r in chosen), tuple(r.size for r in chosen),
                      names, tuple(rec.frames), result)


def draw_scan_step(frames: ScanFrames, step: int, ax: Axes | None = None) -> Axes:
    """Draw frame *step*: the objects coloured by state above, the gray list below.

    The object the event is about has a blue outline; reported objects (last
    frame) a red one.  The axes are cleared first, so the same Axes can show
    successive steps (that is how :func:`scan_animation` uses it).

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from kmemsim import Kernel
    >>> k = Kernel(); a = k.kzalloc(32); k.sleep(6)
    >>> frames = scan_frames(k, [a], labels={a: "a"})
    >>> ax = draw_scan_step(frames, len(frames) - 1)
    >>> ax.get_title().endswith("report: 1 white object(s) listed as leaks")
    True
    """
    if not isinstance(step, int) or isinstance(step, bool):
        raise KmemsimTypeError("step must be an int")
    if not -len(frames) <= step < len(frames):
        raise KmemsimValueError(f"step must be in [0, {len(frames)}), got {step}")
    from matplotlib.patches import Patch, Rectangle

    ax = _new_axes(ax)
    ax.clear()
    frame = frames[step]
    n = len(frames.pointers)
    reported = set(frame.reported)
    for i, state in enumerate(frame.states):
        edge, lw = "0.3", 0.8
        if i in reported:
            edge, lw = _REPORTED_EDGE, 2.5
        if i == frame.subject:
            edge, lw = _CURRENT_EDGE, 2.5
        ax.add_patch(Rectangle((i + 0.1, 1.1), 0.8, 0.8, facecolor=SCAN_STATE_COLORS[state],
                               edgecolor=edge, linewidth=lw))
        ax.text(i + 0.5, 1.5, frames.labels[i], ha="center", va="center", fontsize="small",
                color="white" if state in (SCANNED, BLACK) else "black")
    for slot, i in enumerate(frame.gray_list):
        ax.add_patch(Rectangle((slot + 0.1, 0.1), 0.8, 0.8,
                               facecolor=SCAN_STATE_COLORS[frame.states[i]], edgecolor="0.3"))
        ax.text(slot + 0.5, 0.5, frames.labels[i], ha="center", va="center", fontsize="small")
    width = max(n, len(frame.gray_list), 1)
    ax.set_xlim(0, width)
    ax.set_ylim(0, 2)
    ax.set_yticks([0.5, 1.5], ["gray list\n(head at left)", "tracked\nobjects"])
    ax.set_xticks([])
    ax.set_xlabel("objects in address order (one box each); the gray list in FIFO order")
    ax.set_title(f"step {step % len(frames)} of {len(frames) - 1}: "
                 f"{frame.describe(frames.labels)}", fontsize="medium")
    ax.legend(handles=[Patch(facecolor=SCAN_STATE_COLORS[s], edgecolor="0.3", label=s)
                       for s in SCAN_STATES],
              loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize="small",
              frameon=False)
    return ax


def scan_animation(frames: ScanFrames, *, fig: Figure | None = None,
                   interval: int = 700) -> FuncAnimation:
    """A matplotlib animation of :func:`draw_scan_step` over every frame.

    In a notebook: ``HTML(scan_animation(frames).to_jshtml())``.  *interval*
    is the delay between frames in milliseconds.  Keep the returned object
    alive while it plays.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    if interval <= 0:
        raise KmemsimValueError(f"interval must be positive, got {interval}")
    if fig is None:
        fig = plt.figure(figsize=(max(6.0, 0.6 * len(frames.pointers)), 3.2))
    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    fig.subplots_adjust(bottom=0.3)

    def update(i: int) -> list[Any]:
        draw_scan_step(frames, i, ax=ax)
        return []

    return FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False,
                         repeat=False)


# ------------------------------------------------------------------ rates
def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def rates(rows: Sequence[Mapping[str, Any]], x: str, y: str, hue: str | None = None,
          ax: Axes | None = None, *, xlabel: str | None = None, ylabel: str | None = None,
          logx: bool = False, **line_kw: Any) -> Axes:
    """*y* against *x* with its confidence interval (columns ``{y}_lo``, ``{y}_hi``).

    One line per value of *hue*.  A numeric *x* gives lines with a shaded
    band; a text *x* (an encoding, a cause) gives points with error bars,
    dodged by *hue*.  Labels default to the column names, with ``(fraction)``
    on *y*; pass *xlabel* and *ylabel* to give units.  *line_kw* goes to
    ``ax.plot`` / ``ax.errorbar``.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> rows = [{"p": p, "fp": p / 2, "fp_lo": p / 3, "fp_hi": p / 1.5} for p in (0.1, 0.2)]
    >>> ax = rates(rows, x="p", y="fp", xlabel="encoded share (fraction)")
    >>> ax.get_xlabel(), ax.get_ylabel(), len(ax.lines), len(ax.collections)
    ('encoded share (fraction)', 'fp (fraction)', 1, 1)
    """
    if not rows:
        raise KmemsimValueError("rows must not be empty")
    for col in (x, y, f"{y}_lo", f"{y}_hi") + ((hue,) if hue else ()):
        if col not in rows[0]:
            raise KmemsimValueError(f"rows have no column {col!r} "
                                    f"(columns: {', '.join(map(str, rows[0]))})")
    ax = _new_axes(ax)
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[hue] if hue else None, []).append(r)
    numeric = all(_is_number(r[x]) for r in rows)
    categories: list[Any] = []
    if not numeric:
        for r in rows:
            if r[x] not in categories:
                categories.append(r[x])
    ng = len(groups)
    for gi, (key, grp) in enumerate(groups.items()):
        label = f"{hue} = {key}" if hue else y
        if numeric:
            grp = sorted(grp, key=lambda r: r[x])
            xs = [float(r[x]) for r in grp]
            (line,) = ax.plot(xs, [r[y] for r in grp], marker="o", label=label, **line_kw)
            ax.fill_between(xs, [r[f"{y}_lo"] for r in grp], [r[f"{y}_hi"] for r in grp],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        else:
            dodge = (gi - (ng - 1) / 2) * 0.8 / max(ng, 1) if ng > 1 else 0.0
            xs = [categories.index(r[x]) + dodge for r in grp]
            ys = [float(r[y]) for r in grp]
            # max(0, ...): a Wilson bound at 0 or 1 can miss the rate by a rounding error
            err = [[max(0.0, yv - float(r[f"{y}_lo"])) for yv, r in zip(ys, grp, strict=True)],
                   [max(0.0, float(r[f"{y}_hi"]) - yv) for yv, r in zip(ys, grp, strict=True)]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, label=label, **line_kw)
    if not numeric:
        names = [str(c) for c in categories]
        # long or many labels collide when horizontal
        slant = len(names) > 4 or sum(map(len, names)) > 48
        ax.set_xticks(range(len(names)), names, rotation=25 if slant else 0,
                      ha="right" if slant else "center")
    if logx and numeric:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        # label the swept values themselves, plainly, instead of powers of ten
        ticks = sorted({float(r[x]) for r in rows if float(r[x]) > 0})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel if xlabel is not None else x.replace("_", " "))
    ax.set_ylabel(ylabel if ylabel is not None else f"{y.replace('_', ' ')} (fraction)")
    if hue:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


# ------------------------------------------------------------------ /proc series
def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{field: value}`` (kB, or a count for ``HugePages_*``).

    >>> parse_meminfo("MemTotal:  1024 kB\\nHugePages_Total:  0\\n")
    {'MemTotal': 1024, 'HugePages_Total': 0}
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and rest.split():
            out[name.strip()] = int(rest.split()[0])
    return out


def parse_slabinfo(text: str) -> dict[str, dict[str, int]]:
    """``/proc/slabinfo`` (version 2.1) as ``{cache: {column: value}}``.

    >>> line = "kmalloc-32  3  128  32  128  1 : tunables 0 0 0 : slabdata 1 1 0"
    >>> parse_slabinfo("slabinfo - version: 2.1\\n# name ...\\n" + line)["kmalloc-32"]["active_objs"]
    3
    """
    cols = ("active_objs", "num_objs", "objsize", "objperslab", "pagesperslab")
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("slabinfo", "#")):
            continue
        head, _, tail = line.partition(":")
        parts = head.split()
        if len(parts) < 1 + len(cols):
            continue
        row = dict(zip(cols, map(int, parts[1:1 + len(cols)]), strict=True))
        slabdata = tail.rpartition("slabdata")[2].split()
        if len(slabdata) >= 2:
            row["active_slabs"], row["num_slabs"] = int(slabdata[0]), int(slabdata[1])
        out[parts[0]] = row
    return out


def sample_proc(k: Kernel, seconds: float, every: float = 1.0, *,
                fields: Sequence[str] = ("MemFree", "Slab", "SUnreclaim"),
                caches: Sequence[str] = ()) -> list[dict[str, float]]:
    """Read ``/proc/meminfo`` and ``/proc/slabinfo`` now and every *every* seconds.

    Simulated time passes (``k.sleep``) for *seconds* in all; one sample is
    taken at the start and one after each step.  Each sample has
    ``"uptime"`` (s), each meminfo field in *fields* (kB) and
    ``"slabinfo:CACHE"`` (active objects) for each cache in *caches*.
    """
    if not _is_number(seconds) or not _is_number(every):
        raise KmemsimTypeError("seconds and every must be numbers")
    if seconds < 0 or every <= 0:
        raise KmemsimValueError(
            f"seconds must be >= 0 and every > 0, got seconds={seconds}, every={every}")
    samples: list[dict[str, float]] = []
    steps = int(seconds / every + 1e-9)

    def take() -> None:
        mi = parse_meminfo(k.read("/proc/meminfo"))
        si = parse_slabinfo(k.read("/proc/slabinfo")) if caches else {}
        s: dict[str, float] = {"uptime": round(k.uptime, 6)}
        for f in fields:
            if f not in mi:
                raise KmemsimValueError(f"fields: /proc/meminfo has no {f!r}")
            s[f] = float(mi[f])
        for c in caches:
            s[f"slabinfo:{c}"] = float(si[c]["active_objs"]) if c in si else 0.0
        samples.append(s)

    take()
    for _ in range(steps):
        k.sleep(every)
        take()
    return samples


def _series(samples: Sequence[Mapping[str, float]], keys: Sequence[str], ax: Axes | None,
            relative: bool, unit: str, label_of: Mapping[str, str]) -> Axes:
    if not samples:
        raise KmemsimValueError("samples must not be empty")
    for key in keys:
        if key not in samples[0]:
            raise KmemsimValueError(f"samples have no {key!r}")
    ax = _new_axes(ax)
    t = [s["uptime"] for s in samples]
    for key in keys:
        base = samples[0][key] if relative else 0.0
        ax.plot(t, [s[key] - base for s in samples], label=label_of.get(key, key))
    ax.set_xlabel("uptime (s)")
    ax.set_ylabel(f"change since the first sample ({unit})" if relative else unit)
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def meminfo_series(samples: Sequence[Mapping[str, float]], ax: Axes | None = None, *,
                   fields: Sequence[str] | None = None, relative: bool = True) -> Axes:
    """The meminfo fields of :func:`sample_proc` samples against uptime, in kB.

    *relative* (default) plots the change since the first sample, so a
    falling ``MemFree`` and a growing ``Slab`` share one scale.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> s = [{"uptime": 0.0, "Slab": 8.0}, {"uptime": 1.0, "Slab": 12.0}]
    >>> ax = meminfo_series(s)
    >>> [float(v) for v in ax.lines[0].get_ydata()], ax.get_ylabel()
    ([0.0, 4.0], 'change since the first sample (kB)')
    """
    keys = list(fields) if fields is not None else [
        key for key in samples[0] if key != "uptime" and not key.startswith("slabinfo:")] \
        if samples else []
    return _series(samples, keys, ax, relative, "kB", {})


def slabinfo_series(samples: Sequence[Mapping[str, float]], ax: Axes | None = None, *,
                    caches: Sequence[str] | None = None, relative: bool = False) -> Axes:
    """The slab caches' active objects of :func:`sample_proc` samples against uptime.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> s = [{"uptime": 0.0, "slabinfo:kmalloc-1k": 0.0}, {"uptime": 1.0, "slabinfo:kmalloc-1k": 4.0}]
    >>> slabinfo_series(s).get_legend_handles_labels()[1]
    ['kmalloc-1k']
    """
    keys = ([f"slabinfo:{c}" for c in caches] if caches is not None
            else [key for key in samples[0] if key.startswith("slabinfo:")] if samples else [])
    return _series(samples, keys, ax, relative, "active objects",
                   {key: key.partition(":")[2] for key in keys})

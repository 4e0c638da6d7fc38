"""The ground truth: what the program meant, and a judge of every report and silence.

kmemleak (``kmemsim.kmemleak``) sees bytes; this package sees the program's
intent: which blocks are live, which references it stored (and how they were
encoded), which roots it really has.  Joining the two tells whether each
report is right, and why.
"""

from .encodings import (
    ENCODINGS,
    BaseOffset32,
    Encoding,
    HardenedFreelist,
    Interior,
    LowBitTag,
    OnePastTheEnd,
    Physical,
    Plain,
    Shifted,
    SplitHalves,
    TopByteTag,
    Unaligned,
    Xor,
)
from .explain import Explanation, explain
from .judge import Judgement, KeptBy, LeakGroup, Referrer, Verdict, judge
from .model import Block, Edge, RemovedEdge, Truth
from .views import ToolViews, tool_views

__all__ = [
    "ENCODINGS",
    "BaseOffset32",
    "Block",
    "Edge",
    "Encoding",
    "Explanation",
    "HardenedFreelist",
    "Interior",
    "Judgement",
    "KeptBy",
    "LeakGroup",
    "LowBitTag",
    "OnePastTheEnd",
    "Physical",
    "Plain",
    "Referrer",
    "RemovedEdge",
    "Shifted",
    "SplitHalves",
    "ToolViews",
    "TopByteTag",
    "Truth",
    "Unaligned",
    "Verdict",
    "Xor",
    "explain",
    "judge",
    "tool_views",
]

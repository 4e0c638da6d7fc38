"""C struct layouts computed with each architecture's ABI rules.

A C type here is a small immutable value: a :class:`Scalar` (``char``,
``long``, ``u64`` ...), a :class:`Pointer`, an :class:`Array` or a
:class:`Struct`.  Sizes and alignments are not stored: they are asked of an
:class:`~kmemsim.layout.Arch`, because the same declaration lays out
differently on x86_64 and on i386 (``long`` is 8 or 4 bytes, and the i386
System V ABI aligns 8-byte scalars to 4 inside structs).

The struct from the article, with a ``list_head`` after 25 longs:

>>> from kmemsim.layout import X86_64, I386
>>> node = Struct("node", [
...     ("header", Array(long, 25)), ("list", ListHead), ("name", Array(char, 25)),
... ])
>>> node.sizeof(X86_64), node.offsetof(X86_64, "list"), node.offsetof(X86_64, "list.prev")
(248, 200, 208)
>>> node.sizeof(I386), node.offsetof(I386, "list"), node.offsetof(I386, "name")
(136, 100, 108)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import KmemsimTypeError, KmemsimValueError, check_int
from ..layout import Arch

__all__ = [
    "Array",
    "CType",
    "HlistHead",
    "HlistNode",
    "ListHead",
    "Member",
    "Pointer",
    "Scalar",
    "Struct",
    "char",
    "int_",
    "long",
    "long_long",
    "pointer",
    "s8",
    "s16",
    "s32",
    "s64",
    "short",
    "size_t",
    "u8",
    "u16",
    "u32",
    "u64",
    "unsigned_long",
]

CACHELINE = 64
"""``L1_CACHE_BYTES`` on every simulated arch; only used by :meth:`Struct.describe`."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# One step of a member path: ``name`` optionally followed by ``[i]`` indices.
_PATH_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)\Z")


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


class CType:
    """Base class of the C types: something with a size and an alignment per arch."""

    __slots__ = ()

    def sizeof(self, arch: Arch) -> int:
        """``sizeof(type)`` on *arch*.

        >>> from kmemsim.layout import I386
        >>> long.sizeof(I386)
        4
        """
        raise NotImplementedError

    def alignof(self, arch: Arch) -> int:
        """``_Alignof(type)`` as a struct member on *arch*.

        >>> from kmemsim.layout import I386
        >>> u64.alignof(I386)
        4
        """
        raise NotImplementedError

    @property
    def cname(self) -> str:
        """The type as C spells it (``"unsigned long"``, ``"struct list_head"``)."""
        raise NotImplementedError

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, CType)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class Scalar(CType):
    """An integer type; *size* ``None`` means one machine word (``long``, ``size_t``).

    Alignment is ``min(size, arch.long_align)``: natural alignment, except
    that i386 aligns 8-byte scalars to 4 inside structs.

    >>> from kmemsim.layout import X86_64, I386
    >>> u64.sizeof(I386), u64.alignof(I386), u64.alignof(X86_64)
    (8, 4, 8)
    >>> Scalar("__le16", 2)
    Scalar('__le16', 2)
    """

    __slots__ = ("_cname", "_size")

    def __init__(self, cname: str, size: int | None) -> None:
        if not isinstance(cname, str) or not cname:
            raise KmemsimTypeError(f"scalar name must be a non-empty str, not {cname!r}")
        if size is not None and check_int("size", size, minimum=1) not in (1, 2, 4, 8):
            raise KmemsimValueError(f"scalar {cname!r}: size must be 1, 2, 4 or 8, got {size}")
        self._cname = cname
        self._size = size

    def sizeof(self, arch: Arch) -> int:
        return arch.word_size if self._size is None else self._size

    def alignof(self, arch: Arch) -> int:
        return min(self.sizeof(arch), arch.long_align)

    @property
    def cname(self) -> str:
        return self._cname

    def _key(self) -> tuple[object, ...]:
        return (self._cname, self._size)

    def __repr__(self) -> str:
        return f"Scalar({self._cname!r}, {'word' if self._size is None else self._size})"


class Pointer(Scalar):
    """A pointer to *target* (a C type name, for display only); one word wide.

    >>> from kmemsim.layout import I386
    >>> Pointer("struct list_head").sizeof(I386)
    4
    >>> Pointer("struct list_head").cname
    'struct list_head *'
    """

    __slots__ = ("target",)

    def __init__(self, target: str = "void") -> None:
        if not isinstance(target, str) or not target:
            raise KmemsimTypeError(f"pointer target must be a non-empty str, not {target!r}")
        super().__init__(f"{target} *", None)
        self.target = target

    def __repr__(self) -> str:
        return f"Pointer({self.target!r})"


class Array(CType):
    """``elem[n]``; ``n == 0`` is a flexible array member (size 0).

    >>> from kmemsim.layout import X86_64
    >>> Array(long, 25).sizeof(X86_64)
    200
    >>> Array(long, -1)
    Traceback (most recent call last):
    ...
    kmemsim.errors.KmemsimValueError: array length must be at least 0, got -1
    """

    __slots__ = ("elem", "n")

    def __init__(self, elem: CType, n: int) -> None:
        if not isinstance(elem, CType):
            raise KmemsimTypeError(f"array element must be a C type, not {type(elem).__name__}")
        self.elem = elem
        self.n = check_int("array length", n, minimum=0)

    def sizeof(self, arch: Arch) -> int:
        return self.elem.sizeof(arch) * self.n

    def alignof(self, arch: Arch) -> int:
        return self.elem.alignof(arch)

    @property
    def cname(self) -> str:
        base, dims = self._declarator()
        return f"{base}{dims}"

    def _declarator(self) -> tuple[str, str]:
        """Base type name and ``[n]...`` suffix: C writes ``char name[2][3]``."""
        dims = f"[{self.n}]"
        elem = self.elem
        while isinstance(elem, Array):
            dims += f"[{elem.n}]"
            elem = elem.elem
        return elem.cname, dims

    def _key(self) -> tuple[object, ...]:
        return (self.elem, self.n)

    def __repr__(self) -> str:
        return f"Array({self.elem!r}, {self.n})"


class Member:
    """One laid-out member of a struct on one arch: name, type, offset and size."""

    __slots__ = ("ctype", "name", "offset", "size")

    def __init__(self, name: str, ctype: CType, offset: int, size: int) -> None:
        self.name = name
        self.ctype = ctype
        self.offset = offset
        self.size = size

    def __repr__(self) -> str:
        return f"<Member {self.name} @{self.offset}+{self.size}>"


class _Layout:
    __slots__ = ("align", "by_name", "members", "size")

    def __init__(self, members: tuple[Member, ...], size: int, align: int) -> None:
        self.members = members
        self.by_name = {m.name: m for m in members}
        self.size = size
        self.align = align


class Struct(CType):
    """``struct name { ... }`` laid out in declaration order with ABI padding.

    *fields* is a sequence of ``(member_name, ctype)`` pairs.  Layouts are
    computed once per arch and cached.

    >>> from kmemsim.layout import X86_64, I386
    >>> s = Struct("s", [("c", char), ("v", u64)])
    >>> s.sizeof(X86_64), s.offsetof(X86_64, "v"), s.sizeof(I386), s.offsetof(I386, "v")
    (16, 8, 12, 4)
    >>> s
    Struct('s', c: char, v: u64)
    """

    __slots__ = ("_cache", "_fields", "name")

    def __init__(self, name: str, fields: Sequence[tuple[str, CType]]) -> None:
        if not isinstance(name, str) or not _IDENT.match(name):
            raise KmemsimValueError(f"struct name must be a C identifier, got {name!r}")
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Sequence):
            raise KmemsimTypeError(
                f"struct {name}: fields must be a list of (name, ctype) pairs, "
                f"not {type(fields).__name__}"
            )
        seen: set[str] = set()
        checked: list[tuple[str, CType]] = []
        for i, field in enumerate(fields):
            if not isinstance(field, tuple) or len(field) != 2:
                raise KmemsimTypeError(
                    f"struct {name}: field {i} must be a (name, ctype) pair, got {field!r}"
                )
            mname, ctype = field
            if not isinstance(mname, str) or not _IDENT.match(mname):
                raise KmemsimValueError(
                    f"struct {name}: member name must be a C identifier, got {mname!r}"
                )
            if not isinstance(ctype, CType):
                raise KmemsimTypeError(
                    f"struct {name}: member {mname!r} has type {type(ctype).__name__}, "
                    "which is not a C type"
                )
            if mname in seen:
                raise KmemsimValueError(f"struct {name}: duplicate member {mname!r}")
            seen.add(mname)
            checked.append((mname, ctype))
        self.name = name
        self._fields = tuple(checked)
        self._cache: dict[Arch, _Layout] = {}

    # -- layout ------------------------------------------------------------
    @property
    def fields(self) -> tuple[tuple[str, CType], ...]:
        """The declaration: ``(member_name, ctype)`` pairs in order."""
        return self._fields

    @property
    def cname(self) -> str:
        return f"struct {self.name}"

    def _layout(self, arch: Arch) -> _Layout:
        lay = self._cache.get(arch)
        if lay is None:
            if not isinstance(arch, Arch):
                raise KmemsimTypeError(f"arch must be an Arch, not {type(arch).__name__}")
            off, align = 0, 1
            members = []
            for mname, ctype in self._fields:
                a = ctype.alignof(arch)
                off = _align_up(off, a)
                size = ctype.sizeof(arch)
                members.append(Member(mname, ctype, off, size))
                off += size
                align = max(align, a)
            lay = _Layout(tuple(members), _align_up(off, align), align)
            self._cache[arch] = lay
        return lay

    def sizeof(self, arch: Arch) -> int:
        """``sizeof(struct name)``: end of the last member rounded up to the alignment.

        >>> from kmemsim.layout import ARM64
        >>> ListHead.sizeof(ARM64)
        16
        """
        return self._layout(arch).size

    def alignof(self, arch: Arch) -> int:
        """The largest member alignment (1 for an empty struct).

        >>> from kmemsim.layout import I386
        >>> Struct("t", [("a", char), ("b", u64)]).alignof(I386)
        4
        """
        return self._layout(arch).align

    def members(self, arch: Arch) -> tuple[Member, ...]:
        """The direct members laid out on *arch*.

        >>> from kmemsim.layout import X86_64
        >>> ListHead.members(X86_64)
        (<Member next @0+8>, <Member prev @8+8>)
        """
        return self._layout(arch).members

    def locate(self, arch: Arch, path: str) -> tuple[int, CType]:
        """Offset and type of the member at *path* (``"list.next"``, ``"header[3]"``).

        >>> from kmemsim.layout import X86_64
        >>> Struct("n", [("h", Array(long, 4)), ("list", ListHead)]).locate(X86_64, "h[3]")
        (24, Scalar('long', word))
        """
        if not isinstance(path, str):
            raise KmemsimTypeError(f"member path must be a str, not {type(path).__name__}")
        off = 0
        ctype: CType = self
        for step in path.split("."):
            m = _PATH_STEP.match(step)
            if m is None:
                raise KmemsimValueError(f"{self.cname}: malformed member path {path!r}")
            if not isinstance(ctype, Struct):
                raise KmemsimValueError(
                    f"{self.cname}: {path!r}: {ctype.cname} has no member {m.group(1)!r}"
                )
            member = ctype._layout(arch).by_name.get(m.group(1))
            if member is None:
                raise KmemsimValueError(
                    f"{ctype.cname} has no member named {m.group(1)!r}"
                    + (f" (in path {path!r})" if path != m.group(1) else "")
                )
            off += member.offset
            ctype = member.ctype
            for idx in re.findall(r"\[(\d+)\]", m.group(2)):
                if not isinstance(ctype, Array):
                    raise KmemsimValueError(f"{self.cname}: {path!r}: subscripted a non-array")
                i = int(idx)
                # n == 0 is a flexible array: any index is the caller's business.
                if ctype.n and i >= ctype.n:
                    raise KmemsimValueError(
                        f"{self.cname}: {path!r}: index {i} out of range for [{ctype.n}]"
                    )
                off += i * ctype.elem.sizeof(arch)
                ctype = ctype.elem
        return off, ctype

    def offsetof(self, arch: Arch, path: str) -> int:
        """``offsetof(struct name, path)``; *path* may be dotted or subscripted.

        >>> from kmemsim.layout import X86_64
        >>> HlistNode.offsetof(X86_64, "pprev")
        8
        >>> ListHead.offsetof(X86_64, "nxt")
        Traceback (most recent call last):
        ...
        kmemsim.errors.KmemsimValueError: struct list_head has no member named 'nxt'
        """
        return self.locate(arch, path)[0]

    # -- display -----------------------------------------------------------
    def describe(self, arch: Arch) -> str:
        """A ``pahole``-style table: members with offset and size, holes, padding.

        >>> from kmemsim.layout import X86_64
        >>> print(Struct("s", [("c", char), ("p", pointer), ("i", int_)]).describe(X86_64))
        struct s {
            char                     c;                 /*     0     1 */
        <BLANKLINE>
            /* XXX 7 bytes hole, try to pack */
        <BLANKLINE>
            void *                   p;                 /*     8     8 */
            int                      i;                 /*    16     4 */
        <BLANKLINE>
            /* size: 24, cachelines: 1, members: 3 */
            /* sum members: 13, holes: 1, sum holes: 7 */
            /* padding: 4 */
            /* last cacheline: 24 bytes */
        };
        """
        lay = self._layout(arch)
        lines = [f"{self.cname} {{"]
        end = 0
        holes = []
        for m in lay.members:
            if m.offset > end:
                holes.append(m.offset - end)
                lines += ["", f"    /* XXX {m.offset - end} bytes hole, try to pack */", ""]
            if isinstance(m.ctype, Array):
                tname, dims = m.ctype._declarator()
            else:
                tname, dims = m.ctype.cname, ""
            decl = f"{tname:<24} {m.name}{dims};"
            lines.append(f"    {decl:<43} /* {m.offset:5} {m.size:5} */")
            end = m.offset + m.size
        size = lay.size
        padding = size - end
        lines += ["", f"    /* size: {size}, cachelines: {-(-size // CACHELINE)}, "
                      f"members: {len(lay.members)} */"]
        if holes:
            lines.append(f"    /* sum members: {sum(m.size for m in lay.members)}, "
                         f"holes: {len(holes)}, sum holes: {sum(holes)} */")
        if padding:
            lines.append(f"    /* padding: {padding} */")
        if size % CACHELINE:
            lines.append(f"    /* last cacheline: {size % CACHELINE} bytes */")
        lines.append("};")
        return "\n".join(lines)

    def _key(self) -> tuple[object, ...]:
        return (self.name, self._fields)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {t.cname}" for n, t in self._fields)
        return f"Struct({self.name!r}, {body})"


# -- the C scalar types ----------------------------------------------------------
char = Scalar("char", 1)
u8 = Scalar("u8", 1)
s8 = Scalar("s8", 1)
short = Scalar("short", 2)
u16 = Scalar("u16", 2)
s16 = Scalar("s16", 2)
int_ = Scalar("int", 4)
u32 = Scalar("u32", 4)
s32 = Scalar("s32", 4)
long = Scalar("long", None)
unsigned_long = Scalar("unsigned long", None)
size_t = Scalar("size_t", None)
long_long = Scalar("long long", 8)
u64 = Scalar("u64", 8)
s64 = Scalar("s64", 8)
pointer = Pointer("void")

# -- include/linux/types.h -------------------------------------------------------
ListHead = Struct(
    "list_head", [("next", Pointer("struct list_head")), ("prev", Pointer("struct list_head"))]
)
HlistHead = Struct("hlist_head", [("first", Pointer("struct hlist_node"))])
HlistNode = Struct(
    "hlist_node",
    [("next", Pointer("struct hlist_node")), ("pprev", Pointer("struct hlist_node *"))],
)

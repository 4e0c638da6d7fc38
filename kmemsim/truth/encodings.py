"""Pointer encodings: how a program stores a reference, and whether kmemleak can see it.

An encoding turns the address the program means (``target``) into the bytes
written at ``slot``.  kmemleak reads only those bytes, so a reference is
visible to it exactly when the stored word, read as an address (untagged on
arm64), falls inside the target object.  Each class documents its case:

=====================  =====================================  ==================
encoding               stored word                            kmemleak sees it?
=====================  =====================================  ==================
:class:`Plain`         ``target``                             yes
:class:`Interior`      ``target + offset`` (``container_of``) yes, inside object
:class:`OnePastTheEnd` ``target + size``                      no
:class:`Xor`           ``target ^ key``                       no
:class:`TopByteTag`    tag in bits 56..63                     arm64, i386 yes
:class:`LowBitTag`     ``target | tag`` (tag < alignment)     yes, inside object
:class:`Shifted`       ``virt_to_phys(target) >> PAGE_SHIFT`` no
:class:`Physical`      ``virt_to_phys(target)``               no
:class:`BaseOffset32`  ``target - base`` in 32 bits           no (i386 base 0)
:class:`SplitHalves`   low half at slot, high half later      no
:class:`Unaligned`     ``target`` at ``slot + shift``         no (unaligned)
:class:`HardenedFreelist` ``target ^ secret ^ swab(slot)``    no
=====================  =====================================  ==================

Users add their own by subclassing :class:`Encoding` and implementing
:meth:`~Encoding.encode` (and :meth:`~Encoding.writes` for layouts other than
one word at the slot).

>>> from kmemsim.layout import X86_64
>>> hex(Xor(key=0xff).encode(0xffff888000001000, 0))
'0xffff8880000010ff'
>>> TopByteTag(tag=0x3c).visible_on(X86_64)
False
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..layout import PAGE_SHIFT, Arch


@dataclass(frozen=True)
class Encoding:
    """Base class: a way to store a reference to ``target`` at ``slot``.

    ``arch`` and ``target_size`` are filled in by :meth:`bind` when the
    kernel stores the reference; user subclasses may ignore them.
    """

    arch: Arch | None = None
    target_size: int = 0

    #: A short name used in causes ("encoding XOR").
    label = "plain"
    #: Why kmemleak can or cannot see it, in one sentence.
    note = "the word is the object's address: kmemleak counts it."

    def bind(self, arch: Arch, target_size: int) -> Encoding:
        """Return a copy knowing the architecture and the target's size."""
        return replace(self, arch=arch, target_size=target_size)

    @property
    def word_size(self) -> int:
        return self.arch.word_size if self.arch is not None else 8

    def encode(self, target: int, slot: int) -> int:
        """The word value stored at *slot* for a reference to *target*."""
        return target

    def writes(self, target: int, slot: int) -> list[tuple[int, bytes]]:
        """``(address, bytes)`` pieces to write; by default one word at *slot*."""
        ws = self.word_size
        value = self.encode(target, slot) & ((1 << (8 * ws)) - 1)
        return [(slot, value.to_bytes(ws, "little"))]

    def visible_on(self, arch: Arch) -> bool:
        """Whether kmemleak recognises this reference on *arch* (when its slot is scanned)."""
        return True


@dataclass(frozen=True)
class Plain(Encoding):
    """A plain pointer to the object's start."""


@dataclass(frozen=True)
class Interior(Encoding):
    """A pointer to a member at ``offset`` (a ``list_head`` inside the struct)."""

    offset: int = 0
    label = "interior"
    note = "any address inside the object counts, so container_of-style pointers are seen."

    def encode(self, target: int, slot: int) -> int:
        return target + self.offset


@dataclass(frozen=True)
class OnePastTheEnd(Encoding):
    """``target + size``: the address just past the object (an end iterator)."""

    label = "one past the end"
    note = "the interval is half-open: the byte just past the end is not inside the object."

    def encode(self, target: int, slot: int) -> int:
        return target + self.target_size

    def visible_on(self, arch: Arch) -> bool:
        return False


@dataclass(frozen=True)
class Xor(Encoding):
    """``target ^ key``: XOR-linked lists, obfuscated handles."""

    key: int = 0x5A5A5A5A5A5A5A5A
    label = "XOR"
    note = "the stored word points nowhere; the program needs the key to recover the address."

    def encode(self, target: int, slot: int) -> int:
        return target ^ self.key

    def visible_on(self, arch: Arch) -> bool:
        return False


@dataclass(frozen=True)
class TopByteTag(Encoding):
    """A tag in bits 56..63 (arm64 TBI/KASAN tags)."""

    tag: int = 0x3C
    label = "top-byte tag"
    note = ("arm64 kmemleak untags words (kasan_reset_tag) so it sees them; on x86_64 the "
            "tagged word is a non-canonical address outside every object.")

    def encode(self, target: int, slot: int) -> int:
        return (target & ~(0xFF << 56)) | ((self.tag & 0xFF) << 56)

    def visible_on(self, arch: Arch) -> bool:
        # A 32-bit word has no top byte to tag: the stored word is the plain address.
        return arch.top_byte_tags or arch.word_size < 8


@dataclass(frozen=True)
class LowBitTag(Encoding):
    """``target | tag`` in the low alignment bits (tagged pointers, rb parent colour)."""

    tag: int = 1
    label = "low-bit tag"
    note = "the tagged word still lands inside the object, so kmemleak counts it."

    def encode(self, target: int, slot: int) -> int:
        return target | self.tag


@dataclass(frozen=True)
class Shifted(Encoding):
    """A page frame number: ``virt_to_phys(target) >> PAGE_SHIFT``."""

    label = "PFN"
    note = "a PFN is a small number, far below any kernel address."

    def encode(self, target: int, slot: int) -> int:
        assert self.arch is not None
        return (target - self.arch.page_offset) >> PAGE_SHIFT

    def visible_on(self, arch: Arch) -> bool:
        return False


@dataclass(frozen=True)
class Physical(Encoding):
    """A physical address: ``virt_to_phys(target)`` (DMA descriptors, page tables)."""

    label = "physical address"
    note = "kmemleak never looks physical addresses up; they are outside the virtual window."

    def encode(self, target: int, slot: int) -> int:
        assert self.arch is not None
        return target - self.arch.page_offset

    def visible_on(self, arch: Arch) -> bool:
        return False


@dataclass(frozen=True)
class BaseOffset32(Encoding):
    """A 32-bit offset from a base address (compressed pointers)."""

    base: int = 0
    label = "base plus 32-bit offset"
    note = "the stored value is an offset, not an address."

    def writes(self, target: int, slot: int) -> list[tuple[int, bytes]]:
        return [(slot, ((target - self.base) & 0xFFFFFFFF).to_bytes(4, "little"))]

    def encode(self, target: int, slot: int) -> int:
        return (target - self.base) & 0xFFFFFFFF

    def visible_on(self, arch: Arch) -> bool:
        # With base 0 on a 32-bit architecture the offset is the address itself.
        return arch.word_size == 4 and self.base & 0xFFFFFFFF == 0


@dataclass(frozen=True)
class SplitHalves(Encoding):
    """The low half of the address at ``slot``, the high half ``gap`` bytes later."""

    gap: int = 8
    label = "split halves"
    note = "neither half is an address on its own."

    def writes(self, target: int, slot: int) -> list[tuple[int, bytes]]:
        half = self.word_size // 2
        lo = target & ((1 << (8 * half)) - 1)
        hi = target >> (8 * half)
        return [(slot, lo.to_bytes(half, "little")), (slot + self.gap, hi.to_bytes(half, "little"))]

    def visible_on(self, arch: Arch) -> bool:
        return False


@dataclass(frozen=True)
class Unaligned(Encoding):
    """The plain address stored ``shift`` bytes past an aligned slot (packed structs)."""

    shift: int = 4
    label = "unaligned slot"
    note = "kmemleak reads only aligned words; an unaligned pointer straddles two of them."

    def writes(self, target: int, slot: int) -> list[tuple[int, bytes]]:
        return [(slot + self.shift, target.to_bytes(self.word_size, "little"))]

    def visible_on(self, arch: Arch) -> bool:
        return self.shift % arch.word_size == 0


@dataclass(frozen=True)
class HardenedFreelist(Encoding):
    """SLUB's hardened freelist style: ``target ^ secret ^ swab(slot)``."""

    secret: int = 0x1F2E3D4C5B6A7988
    label = "hardened freelist"
    note = "the word is scrambled with a secret and the slot's own address."

    def encode(self, target: int, slot: int) -> int:
        ws = self.word_size
        swab = int.from_bytes((slot & ((1 << (8 * ws)) - 1)).to_bytes(ws, "little"), "big")
        return target ^ self.secret ^ swab

    def visible_on(self, arch: Arch) -> bool:
        return False


#: Every built-in encoding, by label.
ENCODINGS: dict[str, type[Encoding]] = {
    cls.label: cls for cls in (Plain, Interior, OnePastTheEnd, Xor, TopByteTag, LowBitTag,
                               Shifted, Physical, BaseOffset32, SplitHalves, Unaligned,
                               HardenedFreelist)
}

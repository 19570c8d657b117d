"""Sparse physical memory: real bytes for the frames that were ever written.

A machine with 64 GiB of RAM costs only the frames it touched. Storage is one growing 2-D
numpy array of 4 KiB blocks; a two-level directory (1 GiB superblocks of block slots) turns a
physical address into a storage slot with two numpy gathers, so a batched page-table walk
reads a million entries without a Python loop. A dict mirrors the directory for the scalar
path, where a numpy gather would cost more than the whole lookup budget.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import AddressError

BLOCK_SHIFT = 12
BLOCK_SIZE = 1 << BLOCK_SHIFT
_SB_SHIFT = 18  # blocks per superblock: 2**18 x 4 KiB = 1 GiB
_SB_MASK = (1 << _SB_SHIFT) - 1
_BLOCK_MASK = BLOCK_SIZE - 1
_U64 = {"little": np.dtype("<u8"), "big": np.dtype(">u8")}
_STRUCT = {"little": struct.Struct("<Q"), "big": struct.Struct(">Q")}
_UNPACK = {order: st.unpack_from for order, st in _STRUCT.items()}
_PACK = {order: st.pack_into for order, st in _STRUCT.items()}


class PhysMem:
    """Byte-addressable sparse physical memory; unwritten memory reads as zero."""

    def __init__(self) -> None:
        # Slot 0 is a block of zeros that is never written, and row 0 of the directory is
        # a superblock of nothing but slot 0: unwritten memory gathers as zero with no mask.
        self._store = np.zeros((16, BLOCK_SIZE), dtype=np.uint8)
        #: The store as one flat byte view (slot * BLOCK_SIZE + offset): the scalar paths
        #: index it directly, with no numpy row object per access. Renewed with the store.
        self._flat = self._store.data.cast("B")
        self._nslots = 1
        self._free_slots: list[int] = []
        self._slot: dict[int, int] = {}
        self._top = np.zeros(1, dtype=np.intp)
        self._second = np.zeros((1, 1 << _SB_SHIFT), dtype=np.intp)

    # -- storage management -------------------------------------------------------------
    @property
    def stored_bytes(self) -> int:
        """Host bytes holding simulated frames (what sparseness saves is the rest)."""
        return len(self._slot) * BLOCK_SIZE

    def release_host(self) -> None:
        """Forget every stored byte at once (all memory reads as zero again): for a machine
        that is done with, so the host storage returns before the garbage collector gets to
        the machine's reference cycles."""
        PhysMem.__init__(self)

    def _sb_index(self, sb: int) -> int:
        # The last entry of _top always maps to the empty row, so lookups can clip to it.
        if sb >= self._top.size - 1:
            grown = np.zeros(max(sb + 2, 2 * self._top.size), dtype=np.intp)
            grown[: self._top.size - 1] = self._top[:-1]
            self._top = grown
        idx = int(self._top[sb])
        if idx == 0:
            idx = self._second.shape[0]
            self._second = np.concatenate([self._second, np.zeros((1, 1 << _SB_SHIFT), dtype=np.intp)])
            self._top[sb] = idx
        return idx

    def _slot_for(self, block: int) -> int:
        slot = self._slot.get(block)
        if slot is not None:
            return slot
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            if self._nslots == self._store.shape[0]:
                grown = np.zeros((2 * self._store.shape[0], BLOCK_SIZE), dtype=np.uint8)
                grown[: self._nslots] = self._store[: self._nslots]
                self._store = grown
                self._flat = grown.data.cast("B")
            slot = self._nslots
            self._nslots += 1
        self._slot[block] = slot
        sbi = self._sb_index(block >> _SB_SHIFT)
        self._second[sbi, block & _SB_MASK] = slot
        return slot

    def _slots_for(self, blocks: NDArray[np.uint64]) -> NDArray[np.intp]:
        """Slots for many blocks, creating storage where missing."""
        out = self._lookup_slots(blocks)
        missing = out == 0
        if missing.any():
            for b in np.unique(blocks[missing]).tolist():
                self._slot_for(int(b))
            out = self._lookup_slots(blocks)
        return out

    def _lookup_slots(self, blocks: NDArray[np.uint64]) -> NDArray[np.intp]:
        """Slots of blocks; 0 (the zero block) where the block was never written."""
        sb = np.minimum(blocks >> np.uint64(_SB_SHIFT), np.uint64(self._top.size - 1)).astype(np.intp)
        slots: NDArray[np.intp] = self._second[self._top[sb], (blocks & np.uint64(_SB_MASK)).astype(np.intp)]
        return slots

    def discard(self, pa: int, size: int) -> None:
        """Forget the bytes of whole blocks in [pa, pa+size): they read as zero again."""
        if pa % BLOCK_SIZE or size % BLOCK_SIZE:
            raise AddressError(f"discard needs block-aligned range, got {pa:#x}+{size:#x}")
        self._discard_blocks(np.arange(pa >> BLOCK_SHIFT, (pa + size) >> BLOCK_SHIFT, dtype=np.uint64))

    def discard_frames(self, pfns: NDArray[np.uint64], page_shift: int) -> None:
        """:meth:`discard` of many whole frames (of ``1 << page_shift`` bytes) at once."""
        arr = np.asarray(pfns, dtype=np.uint64)
        per = 1 << max(0, page_shift - BLOCK_SHIFT)
        first = (arr << np.uint64(page_shift)) >> np.uint64(BLOCK_SHIFT)
        self._discard_blocks((first[:, None] + np.arange(per, dtype=np.uint64)[None, :]).ravel())

    def discard_frame(self, pfn: int, page_shift: int) -> None:
        """:meth:`discard_frames` of one frame with plain ints (a freshly allocated page)."""
        first = (pfn << page_shift) >> BLOCK_SHIFT
        slots = self._slot
        for block in range(first, first + (1 << max(0, page_shift - BLOCK_SHIFT))):
            if block in slots:
                slot = slots.pop(block)
                self._store[slot] = 0
                self._second[int(self._top[block >> _SB_SHIFT]), block & _SB_MASK] = 0
                self._free_slots.append(slot)

    def _discard_blocks(self, blocks: NDArray[np.uint64]) -> None:
        """One gather finds the few blocks that hold bytes (a GiB region or a fresh batch of
        pages mostly never stored any); only those cost a Python step."""
        if blocks.size == 0:
            return
        if blocks.size <= 64:  # a frame or a few: the dict answers faster than a gather
            stored = sorted({b for b in blocks.tolist() if b in self._slot})
        else:
            stored = np.unique(blocks[self._lookup_slots(blocks) != 0]).tolist()
        for block in stored:
            slot = self._slot.pop(block)
            self._store[slot] = 0
            self._second[int(self._top[block >> _SB_SHIFT]), block & _SB_MASK] = 0
            self._free_slots.append(slot)

    def blocks(self) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """(physical address, 4 KiB contents) of every stored block, ascending."""
        for block in sorted(self._slot):
            yield block << BLOCK_SHIFT, self._store[self._slot[block]]

    # -- bytes ----------------------------------------------------------------------------
    def read(self, pa: int, size: int) -> bytes:
        """``size`` bytes at ``pa`` (zeros where nothing was written)."""
        off = pa & _BLOCK_MASK
        if 0 < size <= BLOCK_SIZE - off:  # within one block: one slice of the flat view
            slot = self._slot.get(pa >> BLOCK_SHIFT)
            if slot is None:
                return bytes(size)
            base = (slot << BLOCK_SHIFT) + off
            return self._flat[base : base + size].tobytes()
        out = bytearray()
        while size > 0:
            block, off = pa >> BLOCK_SHIFT, pa & (BLOCK_SIZE - 1)
            n = min(size, BLOCK_SIZE - off)
            slot = self._slot.get(block)
            out += bytes(n) if slot is None else self._store[slot, off : off + n].tobytes()
            pa, size = pa + n, size - n
        return bytes(out)

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``pa``."""
        off = pa & _BLOCK_MASK
        if type(data) is bytes and 0 < len(data) <= BLOCK_SIZE - off:  # one block, one slice
            slot = self._slot.get(pa >> BLOCK_SHIFT)
            if slot is None:
                slot = self._slot_for(pa >> BLOCK_SHIFT)
            base = (slot << BLOCK_SHIFT) + off
            self._flat[base : base + len(data)] = data
            return
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            block, off = pa >> BLOCK_SHIFT, pa & (BLOCK_SIZE - 1)
            n = min(len(view) - pos, BLOCK_SIZE - off)
            slot = self._slot_for(block)
            self._store[slot, off : off + n] = np.frombuffer(view[pos : pos + n], dtype=np.uint8)
            pa, pos = pa + n, pos + n

    def copy(self, src: int, dst: int, size: int) -> None:
        """``write(dst, read(src, size))`` for non-overlapping ranges (a COW's page copy):
        whole blocks are copied row to row in the store, without a bytes object between."""
        if (src | dst | size) & _BLOCK_MASK or abs(src - dst) < size:
            self.write(dst, self.read(src, size))
            return
        slots = self._slot
        for i in range(size >> BLOCK_SHIFT):
            s_slot = slots.get((src >> BLOCK_SHIFT) + i)
            d_slot = self._slot_for((dst >> BLOCK_SHIFT) + i)  # may grow the store: index it after
            if s_slot is None:
                self._store[d_slot] = 0
            else:
                self._store[d_slot] = self._store[s_slot]

    # -- 64-bit entries -------------------------------------------------------------------
    def read_u64(self, pa: int, byteorder: str) -> int:
        """One 8-byte entry at ``pa`` (8-byte aligned) in the given byte order."""
        slot = self._slot.get(pa >> BLOCK_SHIFT)
        if slot is None:
            return 0
        value: int = _UNPACK[byteorder](self._flat, (slot << BLOCK_SHIFT) | (pa & _BLOCK_MASK))[0]
        return value

    def write_u64(self, pa: int, value: int, byteorder: str) -> None:
        slot = self._slot.get(pa >> BLOCK_SHIFT)
        if slot is None:
            slot = self._slot_for(pa >> BLOCK_SHIFT)
        _PACK[byteorder](self._flat, (slot << BLOCK_SHIFT) | (pa & _BLOCK_MASK), value)

    def gather_u64(self, pas: NDArray[np.uint64], byteorder: str) -> NDArray[np.uint64]:
        """Entries at many 8-byte-aligned physical addresses, as native uint64."""
        pas = np.asarray(pas, dtype=np.uint64)
        slots = self._lookup_slots(pas >> np.uint64(BLOCK_SHIFT))
        words = self._store.view(_U64[byteorder])
        col = ((pas & np.uint64(BLOCK_SIZE - 1)) >> np.uint64(3)).astype(np.intp)
        out = words[slots, col]
        return np.asarray(out, dtype=np.uint64)

    def scatter_u64(self, pas: NDArray[np.uint64], values: NDArray[np.uint64], byteorder: str) -> None:
        """Store entries at many 8-byte-aligned physical addresses."""
        pas = np.asarray(pas, dtype=np.uint64)
        slots = self._slots_for(pas >> np.uint64(BLOCK_SHIFT))
        words = self._store.view(_U64[byteorder])
        col = ((pas & np.uint64(BLOCK_SIZE - 1)) >> np.uint64(3)).astype(np.intp)
        words[slots, col] = np.asarray(values, dtype=np.uint64)

    def fill_u64(self, pa: int, count: int, value: int, byteorder: str) -> None:
        """Write ``count`` copies of an entry from ``pa`` (a new table's empty entries)."""
        if value == 0:
            end = pa + count * 8
            # Zero is what unwritten memory reads as: dropping whole blocks keeps it sparse.
            head = min(end, (pa + BLOCK_SIZE - 1) & ~(BLOCK_SIZE - 1))
            tail = max(head, end & ~(BLOCK_SIZE - 1))
            if head > pa:
                self._zero(pa, head - pa)
            if tail > head:
                self.discard(head, tail - head)
            if end > tail:
                self._zero(tail, end - tail)
            return
        if pa % 8 == 0:  # whole entries: one slice of each block they cover
            dtype = _U64[byteorder]
            end = pa + count * 8
            while pa < end:
                block, off = pa >> BLOCK_SHIFT, pa & (BLOCK_SIZE - 1)
                n = min(end - pa, BLOCK_SIZE - off)
                slot = self._slot_for(block)  # may grow the store: index it afterwards
                words = self._store[slot].view(dtype)
                words[off >> 3 : (off + n) >> 3] = value
                pa += n
            return
        pas = np.arange(pa, pa + count * 8, 8, dtype=np.uint64)
        self.scatter_u64(pas, np.full(count, value, dtype=np.uint64), byteorder)

    def _zero(self, pa: int, size: int) -> None:
        if (pa >> BLOCK_SHIFT) in self._slot:
            self.write(pa, bytes(size))

    # -- images ---------------------------------------------------------------------------
    def load(self, path: str | Path, base: int = 0) -> None:
        """Read a flat raw image (offset == physical address - base), keeping it sparse."""
        chunk = 256 * BLOCK_SIZE
        with open(path, "rb") as fh:
            offset = 0
            while data := fh.read(chunk):
                blocks = np.frombuffer(data + bytes(-len(data) % BLOCK_SIZE), dtype=np.uint8).reshape(
                    -1, BLOCK_SIZE
                )
                for k in np.flatnonzero(blocks.any(axis=1)).tolist():
                    self.write(base + offset + k * BLOCK_SIZE, blocks[k].tobytes())
                offset += len(data)

    def dump(self, path: str | Path, size: int | None = None) -> int:
        """Write a flat raw image (file offset == physical address), sparse on disk.

        ``size`` sets the file length (e.g. the end of RAM); returns the length written.
        """
        end = max((b + BLOCK_SIZE for b, _ in self.blocks()), default=0)
        length = max(end, size or 0)
        with open(path, "wb") as fh:
            for addr, content in self.blocks():
                if content.any():
                    fh.seek(addr)
                    fh.write(content.tobytes())
            fh.truncate(length)
        return length

"""speexdsp's jitter buffer (Debian's libspeexdsp1) through ctypes, to compare ours with.

Only what the jitter-quality benchmark needs: init with a step, put, get one
frame's span, tick, and the playout pointer. The library is speexdsp 1.2's
(``speex/speex_jitter.h``): a timestamp-driven buffer that learns how early
frames arrive relative to its playout pointer, which moves one frame per tick.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from enum import IntEnum
from typing import Any

_MAX_PAYLOAD = 1500
_GET_AVAILABLE_COUNT = 3  # jitter_buffer_ctl request, speex_jitter.h


class SpeexGet(IntEnum):
    """What ``jitter_buffer_get`` returned."""

    OK = 0
    """A frame to play."""
    MISSING = 1
    """No frame for this slot: conceal."""
    INSERTION = 2
    """The buffer grows: conceal, and the pointer does not move."""


class _Packet(ctypes.Structure):
    # JitterBufferPacket, speex_jitter.h
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint32),
        ("span", ctypes.c_uint32),
        ("sequence", ctypes.c_uint16),
        ("user_data", ctypes.c_uint32),
    )


def _library() -> Any:
    name = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as error:
        raise RuntimeError(
            f"speexdsp is not installed ({error}): run scripts/install-system-deps"
        ) from error
    lib.jitter_buffer_init.restype = ctypes.c_void_p
    lib.jitter_buffer_init.argtypes = (ctypes.c_int,)
    lib.jitter_buffer_destroy.argtypes = (ctypes.c_void_p,)
    lib.jitter_buffer_put.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Packet))
    lib.jitter_buffer_get.restype = ctypes.c_int
    lib.jitter_buffer_get.argtypes = (
        ctypes.c_void_p,
        ctypes.POINTER(_Packet),
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int32),
    )
    lib.jitter_buffer_tick.argtypes = (ctypes.c_void_p,)
    lib.jitter_buffer_ctl.restype = ctypes.c_int
    lib.jitter_buffer_ctl.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
    lib.jitter_buffer_get_pointer_timestamp.restype = ctypes.c_int
    lib.jitter_buffer_get_pointer_timestamp.argtypes = (ctypes.c_void_p,)
    return lib


class SpeexJitterBuffer:
    """One speexdsp jitter buffer with its defaults, ``step`` samples per frame and delay step."""

    def __init__(self, step: int) -> None:
        self._lib = _library()
        self._state = self._lib.jitter_buffer_init(step)
        if not self._state:
            raise MemoryError("jitter_buffer_init failed")
        self._out = ctypes.create_string_buffer(_MAX_PAYLOAD)
        self._offset = ctypes.c_int32()

    def close(self) -> None:
        """Free the library's state."""
        if self._state:
            self._lib.jitter_buffer_destroy(self._state)
            self._state = None

    def __enter__(self) -> SpeexJitterBuffer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def put(self, payload: bytes, timestamp: int, span: int, frame: int) -> None:
        """Hand in one frame; ``frame`` comes back from :meth:`get` to say which it was."""
        data = ctypes.create_string_buffer(payload, len(payload))
        packet = _Packet(
            ctypes.cast(data, ctypes.c_void_p), len(payload), timestamp, span, frame & 0xFFFF, frame
        )
        self._lib.jitter_buffer_put(self._state, ctypes.byref(packet))

    def get(self, span: int) -> tuple[SpeexGet, int | None]:
        """The decision for one playout tick of ``span`` samples, and the frame to play if any."""
        packet = _Packet(ctypes.cast(self._out, ctypes.c_void_p), _MAX_PAYLOAD, 0, 0, 0, 0)
        result = SpeexGet(
            self._lib.jitter_buffer_get(
                self._state, ctypes.byref(packet), span, ctypes.byref(self._offset)
            )
        )
        return result, packet.user_data if result == SpeexGet.OK else None

    def tick(self) -> None:
        """The end of a playout tick: the buffer adapts its delay here."""
        self._lib.jitter_buffer_tick(self._state)

    @property
    def held_frames(self) -> int:
        """Frames held that are not behind the playout pointer."""
        count = ctypes.c_int32()
        self._lib.jitter_buffer_ctl(self._state, _GET_AVAILABLE_COUNT, ctypes.byref(count))
        return count.value

    @property
    def pointer_timestamp(self) -> int:
        """The timestamp the next :meth:`get` plays (unsigned 32 bits)."""
        result: int = self._lib.jitter_buffer_get_pointer_timestamp(self._state)
        return result & 0xFFFFFFFF

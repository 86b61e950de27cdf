"""Callbox media core: the compiled engine that every call's audio passes through.

This package is the public, typed surface. The work is done by a private C++
extension (``core._core``, built by setup.py). Two environment switches pick
another implementation at import time:

- ``CALLBOX_CORE=sanitize``: the AddressSanitizer/UBSan build
  (``core._core_sanitize``, built with ``CALLBOX_SANITIZE=1``);
- ``CALLBOX_CORE=python``: the pure-Python reference twin (``core._reference``),
  slow but obvious, used to test the compiled kernels against.

Audio is 16-bit signed linear PCM in native byte order, 8 kHz unless a
function says otherwise. Functions take any bytes-like object.
"""

from __future__ import annotations

from core._codecs import (
    CodecError,
    CodecInfo,
    Decoder,
    DtmfDetector,
    DtmfGenerator,
    Encoder,
    ReceivedEvent,
    Resampler,
    TelephoneEvent,
    TelephoneEventPacket,
    TelephoneEventReceiver,
    TelephoneEventSender,
    ToneGenerator,
    ToneSpec,
    Transcoder,
    codec_info,
    codec_names,
    dtmf_digit,
    dtmf_event,
    parse_fmtp,
    tone_names,
    tone_plans,
    tone_spec,
)
from core._engine import (
    CallRecording,
    Conference,
    Engine,
    LegStats,
    MediaEvent,
    RtpLeg,
)
from core._g711 import (
    alaw_decode,
    alaw_encode,
    library_versions,
    ulaw_decode,
    ulaw_encode,
)
from core._jitter import (
    JitterBuffer,
    JitterDecision,
    JitterPut,
    JitterStats,
    Playout,
)
from core._loader import (
    IMPLEMENTATION,
)
from core._mixer import (
    MixedTick,
    Mixer,
    SupervisorMode,
    TalkerEvent,
)
from core._player import (
    DTMF_DIGITS,
    PLAYER_RATES,
    PlaybackEnd,
    PlaybackPosition,
    Player,
    Prompt,
    PromptCacheInfo,
    PromptError,
    Silence,
    prompt_cache_info,
    set_prompt_cache_limit,
)
from core._record import (
    FRAME_MS,
    MP3_BITRATES,
    RecordError,
    RecorderService,
    Recording,
    RecordingInfo,
    wav_to_mp3,
)
from core._rtp import (
    Disposition,
    Quality,
    ReceiveSnapshot,
    ReceiveStats,
    ReportBlock,
    RtcpReport,
    RtpPacket,
    SenderInfo,
    build_rtcp,
    build_rtp,
    e_model,
    parse_rtcp,
    parse_rtp,
)

__all__ = [
    "DTMF_DIGITS",
    "FRAME_MS",
    "IMPLEMENTATION",
    "MP3_BITRATES",
    "PLAYER_RATES",
    "CallRecording",
    "CodecError",
    "CodecInfo",
    "Conference",
    "Decoder",
    "Disposition",
    "DtmfDetector",
    "DtmfGenerator",
    "Encoder",
    "Engine",
    "JitterBuffer",
    "JitterDecision",
    "JitterPut",
    "JitterStats",
    "LegStats",
    "MediaEvent",
    "MixedTick",
    "Mixer",
    "PlaybackEnd",
    "PlaybackPosition",
    "Player",
    "Playout",
    "Prompt",
    "PromptCacheInfo",
    "PromptError",
    "Quality",
    "ReceiveSnapshot",
    "ReceiveStats",
    "ReceivedEvent",
    "RecordError",
    "RecorderService",
    "Recording",
    "RecordingInfo",
    "ReportBlock",
    "Resampler",
    "RtcpReport",
    "RtpLeg",
    "RtpPacket",
    "SenderInfo",
    "Silence",
    "SupervisorMode",
    "TalkerEvent",
    "TelephoneEvent",
    "TelephoneEventPacket",
    "TelephoneEventReceiver",
    "TelephoneEventSender",
    "ToneGenerator",
    "ToneSpec",
    "Transcoder",
    "alaw_decode",
    "alaw_encode",
    "build_rtcp",
    "build_rtp",
    "codec_info",
    "codec_names",
    "dtmf_digit",
    "dtmf_event",
    "e_model",
    "library_versions",
    "parse_fmtp",
    "parse_rtcp",
    "parse_rtp",
    "prompt_cache_info",
    "set_prompt_cache_limit",
    "tone_names",
    "tone_plans",
    "tone_spec",
    "ulaw_decode",
    "ulaw_encode",
    "wav_to_mp3",
]

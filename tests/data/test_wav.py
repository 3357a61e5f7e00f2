"""WAV header parsing and the pre-flight check, including agreement with tf.audio.decode_wav."""

from __future__ import annotations

import builtins
import os
import struct
import wave

import numpy as np
import pytest

from fat_tf.data.wav import WavInfo, check_wav, decode_wav_problem, read_wav_info
from fat_tf.errors import AudioFormatError, DataError

RATE = 44100
KS_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


# ----------------------------------------------------------------------------- WAV builders


def chunk(cid: bytes, body: bytes, pad: bool = True) -> bytes:
    """A RIFF chunk; odd bodies get their pad byte unless ``pad`` is False."""
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if pad and len(body) % 2 else b"")


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(tag=1, channels=1, rate=RATE, bits=16, sub=None, extra=b"") -> bytes:
    """A ``fmt `` chunk; ``sub`` makes it WAVE_FORMAT_EXTENSIBLE with that sub-format."""
    align = channels * ((bits + 7) // 8)
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if sub is not None:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", sub) + KS_TAIL
    return chunk(b"fmt ", body + extra)


def samples(n=441, channels=1, bits=16, fmt_code=1) -> bytes:
    """``n`` frames of a sine in the given sample format."""
    x = np.repeat(np.sin(np.arange(n) * 0.05) * 0.5, channels)
    if fmt_code == 3:
        return x.astype("<f4").tobytes()
    if bits == 8:
        return (x * 127 + 128).astype("u1").tobytes()
    ints = (x * (2 ** (bits - 1) - 1)).astype("<i8")
    return b"".join(int(v).to_bytes(8, "little", signed=True)[: bits // 8] for v in ints)


def pcm16_wav(n=441, channels=1, rate=RATE) -> bytes:
    return riff(fmt(channels=channels, rate=rate), chunk(b"data", samples(n, channels)))


GOOD = pcm16_wav()
DATA = chunk(b"data", samples())
LIST7 = chunk(b"LIST", b"INFOabc")  # odd-sized, padded
LIST8 = chunk(b"LIST", b"INFOabcd")


def _corrupt() -> bytes:
    rng = np.random.default_rng(0)
    body = b"WAVE" + bytes(rng.integers(0, 256, 400, dtype=np.uint8))
    return b"RIFF" + struct.pack("<I", len(body)) + body


# name -> (file bytes, substrings the check_wav error must contain, or None if accepted)
CASES: dict[str, tuple[bytes, tuple[str, ...] | None]] = {
    "pcm16": (GOOD, None),
    "fmt18": (riff(fmt(extra=b"\0\0"), DATA), None),
    "fact_chunk": (riff(fmt(), chunk(b"fact", b"\x01\0\0\0"), DATA), None),
    "even_list_before_data": (riff(fmt(), LIST8, DATA), None),
    "junk_before_fmt": (riff(chunk(b"JUNK", b"abcd"), fmt(), DATA), None),
    "list_after_data": (riff(fmt(), DATA, LIST8), None),
    "unpadded_odd_list": (riff(fmt(), chunk(b"LIST", b"INFOabc", pad=False), DATA), None),
    "riff_size_wrong": (b"RIFF" + struct.pack("<I", 12345) + GOOD[8:], None),
    "corrupt": (_corrupt(), ("corrupt",)),
    "not_riff": (b"ID3\x03" + bytes(100), ("not a RIFF/WAVE file",)),
    "rifx": (b"RIFX" + GOOD[4:], ("not a RIFF/WAVE file", "RIFX")),
    "not_wave": (GOOD[:8] + b"AVI " + GOOD[12:], ("not a RIFF/WAVE file", "AVI")),
    "truncated_header": (GOOD[:30], ("truncated",)),
    "tiny": (b"RIF", ("truncated",)),
    "truncated_data": (GOOD[:-100], ("data chunk truncated", "declares 882 bytes")),
    "no_fmt": (riff(DATA), ("no 'fmt ' chunk",)),
    "no_data": (riff(fmt(), LIST8), ("no 'data' chunk",)),
    "zero_samples": (riff(fmt(), chunk(b"data", b"")), ("zero samples",)),
    "stereo": (pcm16_wav(channels=2), ("2 channels", "mono")),
    "three_channels": (pcm16_wav(channels=3), ("3 channels", "mono")),
    "rate_22050": (pcm16_wav(rate=22050), ("22050 Hz found", "44100 Hz expected", "resampl")),
    "pcm8": (riff(fmt(bits=8), chunk(b"data", samples(bits=8))), ("8-bit PCM", "16-bit")),
    "pcm24": (riff(fmt(bits=24), chunk(b"data", samples(bits=24))), ("24-bit PCM", "16-bit")),
    "pcm32": (riff(fmt(bits=32), chunk(b"data", samples(bits=32))), ("32-bit PCM", "16-bit")),
    "float32": (
        riff(fmt(tag=3, bits=32), chunk(b"data", samples(fmt_code=3))),
        ("32-bit float", "only 16-bit PCM", "sox", "ffmpeg"),
    ),
    "alaw": (riff(fmt(tag=6, bits=8), chunk(b"data", samples(bits=8))), ("alaw", "16-bit")),
    "extensible_float": (
        riff(fmt(tag=0xFFFE, bits=32, sub=3), chunk(b"data", samples(fmt_code=3))),
        ("32-bit float (WAVE_FORMAT_EXTENSIBLE)",),
    ),
    "extensible_pcm16": (
        riff(fmt(tag=0xFFFE, sub=1), DATA),
        ("tf.audio.decode_wav cannot read", "WAVE_FORMAT_EXTENSIBLE"),
    ),
    "list_before_fmt": (riff(LIST8, fmt(), DATA), ("decode_wav cannot read", "b'LIST'")),
    "data_before_fmt": (riff(DATA, fmt()), ("decode_wav cannot read", "b'data'")),
    "odd_list_before_data": (riff(fmt(), LIST7, DATA), ("decode_wav cannot read", "pad")),
    "odd_data_size": (riff(fmt(), chunk(b"data", samples()[:-1])), ("stray byte",)),
    "trailing_junk": (GOOD + b"abc", ("3 stray byte(s)",)),
    "two_data_chunks": (riff(fmt(), DATA, DATA), ("more than one data chunk",)),
    "bad_block_align": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, RATE, RATE * 4, 4, 16)), DATA),
        ("block align 4",),
    ),
    "bad_byte_rate": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, RATE, 1000, 2, 16)), DATA),
        ("byte rate 1000",),
    ),
    "fmt_size_20": (riff(fmt(extra=b"\0" * 4), DATA), ("'fmt ' chunk is 20 bytes",)),
}


def write(tmp_path, name: str, data: bytes) -> str:
    path = os.path.join(tmp_path, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ----------------------------------------------------------------------------- read_wav_info


def test_read_wav_info_of_stdlib_wave_file(tmp_path):
    path = str(tmp_path / "a.wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.zeros(22050, "<i2").tobytes())
    info = read_wav_info(path)
    assert info == WavInfo(
        path=path,
        sample_rate=RATE,
        channels=1,
        bits_per_sample=16,
        format="pcm",
        num_frames=22050,
        duration=0.5,
        data_offset=44,
        data_size=44100,
        block_align=2,
    )
    assert info.description == "16-bit PCM, mono, 44100 Hz"
    assert check_wav(path) == info


def test_read_wav_info_skips_padded_odd_chunks_and_list(tmp_path):
    path = write(tmp_path, "a.wav", riff(LIST7, fmt(), chunk(b"bext", b"x" * 5), LIST7, DATA))
    info = read_wav_info(path)
    assert (info.num_frames, info.format, info.channels) == (441, "pcm", 1)
    assert info.data_offset == len(riff(LIST7, fmt(), chunk(b"bext", b"x" * 5), LIST7)) + 8


def test_read_wav_info_resolves_extensible_sub_format(tmp_path):
    data, _ = CASES["extensible_float"]
    info = read_wav_info(write(tmp_path, "f.wav", data))
    assert (info.format, info.bits_per_sample, info.extensible) == ("float", 32, True)
    assert info.num_frames == 441
    info = read_wav_info(write(tmp_path, "p.wav", CASES["extensible_pcm16"][0]))
    assert (info.format, info.bits_per_sample, info.extensible) == ("pcm", 16, True)


def test_read_wav_info_reads_stereo_and_24_bit_lengths(tmp_path):
    info = read_wav_info(write(tmp_path, "s.wav", CASES["stereo"][0]))
    assert (info.channels, info.num_frames, info.block_align) == (2, 441, 4)
    info = read_wav_info(write(tmp_path, "b.wav", CASES["pcm24"][0]))
    assert (info.bits_per_sample, info.num_frames) == (24, 441)
    assert info.duration == pytest.approx(441 / RATE)


# ----------------------------------------------------------------------------- check_wav


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_wav_accepts_or_names_file_and_problem(tmp_path, name):
    data, expected = CASES[name]
    path = write(tmp_path, f"{name}.wav", data)
    if expected is None:
        assert check_wav(path).num_frames == 441
        return
    with pytest.raises(AudioFormatError) as e:
        check_wav(path)
    message = str(e.value)
    assert message.startswith(path + ":"), message
    for part in expected:
        assert part in message, (part, message)


def test_format_errors_suggest_a_conversion(tmp_path):
    path = write(tmp_path, "x.wav", CASES["pcm24"][0])
    with pytest.raises(AudioFormatError, match="pcm_s16le -ac 1 -ar 44100"):
        check_wav(path)
    path = write(tmp_path, "y.wav", CASES["rate_22050"][0])
    with pytest.raises(AudioFormatError, match="-r 44100"):
        check_wav(path)


def test_check_wav_uses_the_requested_sample_rate(tmp_path):
    path = write(tmp_path, "a.wav", CASES["rate_22050"][0])
    assert check_wav(path, sample_rate=22050).sample_rate == 22050
    with pytest.raises(AudioFormatError, match="44100 Hz found, 22050 Hz expected"):
        check_wav(write(tmp_path, "b.wav", GOOD), sample_rate=22050)


def test_audio_format_error_is_a_data_error():
    assert issubclass(AudioFormatError, DataError)


def test_empty_file(tmp_path):
    path = write(tmp_path, "e.wav", b"")
    with pytest.raises(AudioFormatError, match="empty file") as e:
        check_wav(path)
    assert path in str(e.value)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.wav")
    with pytest.raises(AudioFormatError, match="file not found") as e:
        read_wav_info(path)
    assert path in str(e.value)


def test_broken_symlink(tmp_path):
    path = str(tmp_path / "link.wav")
    os.symlink(tmp_path / "gone.wav", path)
    with pytest.raises(AudioFormatError, match="broken symbolic link"):
        check_wav(path)


def test_directory_named_like_a_wav(tmp_path):
    path = tmp_path / "dir.wav"
    path.mkdir()
    with pytest.raises(AudioFormatError, match="is a directory") as e:
        check_wav(path)
    assert str(path) in str(e.value)


def test_unreadable_file(tmp_path):
    path = write(tmp_path, "locked.wav", GOOD)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 0 does not stop reads")
        with pytest.raises(AudioFormatError, match="permission denied") as e:
            check_wav(path)
        assert path in str(e.value)
    finally:
        os.chmod(path, 0o644)


def test_permission_error_message(tmp_path, monkeypatch):
    """The same path as test_unreadable_file, forced (so it runs as root too)."""
    path = write(tmp_path, "locked.wav", GOOD)
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(AudioFormatError, match="cannot be read \\(permission denied\\)") as e:
        check_wav(path)
    assert path in str(e.value)


def test_decode_wav_problem_reports_only_decoder_limits(tmp_path):
    assert decode_wav_problem(write(tmp_path, "s.wav", CASES["stereo"][0])) is None
    assert decode_wav_problem(write(tmp_path, "z.wav", CASES["zero_samples"][0])) is None
    assert "16-bit" in decode_wav_problem(write(tmp_path, "f.wav", CASES["pcm24"][0]))


# ----------------------------------------------------------------------------- vs TensorFlow


def test_check_wav_agrees_with_tf_audio_decode_wav(tmp_path):
    """check_wav accepts a file iff decode_wav decodes it to >0 mono frames at 44.1 kHz,
    and decode_wav_problem is None iff decode_wav succeeds at all."""
    tf = pytest.importorskip("tensorflow")
    mismatches = []
    for name, (data, _) in sorted(CASES.items()):
        path = write(tmp_path, f"{name}.wav", data)
        try:
            audio, rate = tf.audio.decode_wav(data)
            decoded = True
            usable = audio.shape[0] > 0 and audio.shape[1] == 1 and int(rate) == RATE
        except Exception:  # InvalidArgumentError, or UnicodeDecodeError on garbage ids
            decoded = usable = False
        try:
            info = check_wav(path)
            accepted = True
            if usable and info.num_frames != audio.shape[0]:
                mismatches.append(f"{name}: {info.num_frames} frames vs {audio.shape[0]}")
        except AudioFormatError:
            accepted = False
        try:
            replay_ok = decode_wav_problem(path) is None
        except AudioFormatError:
            replay_ok = False
        if accepted != usable:
            mismatches.append(f"{name}: check_wav accepted={accepted}, decode usable={usable}")
        if replay_ok != decoded:
            mismatches.append(f"{name}: replay ok={replay_ok}, decode_wav ok={decoded}")
    assert not mismatches, mismatches

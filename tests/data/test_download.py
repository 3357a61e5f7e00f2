"""``python -m fat_tf.data.fetch.download``: offline, against a stand-in Zenodo on 127.0.0.1.

The tests build a tiny FSDKaggle2019 (a few 16-bit PCM mono 44.1 kHz WAVs, a meta zip with
the four CSVs and a 3-class vocabulary, the noisy set as a real 7-part split zip written by
:func:`split_zip`) and serve it, with the record JSON, from a ``ThreadingHTTPServer`` that
supports ``Range`` and can drop a connection, ignore ``Range``, or answer an error status.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fat_tf.data import load_dataset
from fat_tf.data.fetch import (
    ArchiveError,
    ArchiveMember,
    ChecksumError,
    DownloadError,
    DownloadOptions,
    Progress,
    RemoteFile,
    SplitZipArchive,
    ZipArchive,
    apply_label_fixes,
    check_member_name,
    download_file,
    extract_archive,
    kaggle_labels_csv,
    parse_record,
    plan,
    prepare_from_zenodo,
    read_vocabulary,
    record,
    sample_submission_csv,
)
from fat_tf.data.fetch.download import main
from fat_tf.errors import DataError

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("Bass_drum", "Male_speech_and_man_speaking", "Stream")
CURATED_ZIP = "FSDKaggle2019.audio_train_curated.zip"
TEST_ZIP = "FSDKaggle2019.audio_test.zip"
META_ZIP = "FSDKaggle2019.meta.zip"
NOISY = "FSDKaggle2019.audio_train_noisy"
NOISY_PARTS = [f"{NOISY}.z{i:02d}" for i in range(1, 7)] + [f"{NOISY}.zip"]
RECORD_PATH = "/api/records/3612637"

# curated: two of the six official mislabelled clips (f76181c4 relabel, 77b925c2 remove)
CURATED = [
    ("f76181c4.wav", "Male_speech_and_man_speaking"),
    ("0a1b2c3d.wav", "Stream,Bass_drum"),
    ("77b925c2.wav", "Stream"),
    ("00aa11bb.wav", "Bass_drum"),
    ("c0ffee00.wav", "Male_speech_and_man_speaking"),
]
NOISY_ROWS = [(f"{i:08x}.wav", CLASSES[i % 3]) for i in range(1, 9)]
NOISY_ROWS[2] = (NOISY_ROWS[2][0], "Stream,Bass_drum,Male_speech_and_man_speaking")
TEST_ROWS = [  # (fname, labels, usage), deliberately unsorted
    ("t0000003.wav", "Stream", "Private"),
    ("t0000001.wav", "Bass_drum", "Private"),
    ("t0000002.wav", "Bass_drum,Stream", "Public"),
    ("t0000004.wav", "Male_speech_and_man_speaking", "Private"),
]
CURATED_DROPPED_CSV = (
    "fname,labels\n"
    "00aa11bb.wav,Bass_drum\n"
    '0a1b2c3d.wav,"Stream,Bass_drum"\n'
    "c0ffee00.wav,Male_speech_and_man_speaking\n"
)
CURATED_KAGGLE_CSV = (  # all rows, as Kaggle's train_curated.csv is written
    "fname,labels\n"
    "00aa11bb.wav,Bass_drum\n"
    '0a1b2c3d.wav,"Stream,Bass_drum"\n'
    "77b925c2.wav,Stream\n"
    "c0ffee00.wav,Male_speech_and_man_speaking\n"
    "f76181c4.wav,Male_speech_and_man_speaking\n"
)
SUBMISSION_ALL_CSV = (
    "fname,Bass_drum,Male_speech_and_man_speaking,Stream\n"
    "t0000001.wav,0,0,0\nt0000002.wav,0,0,0\nt0000003.wav,0,0,0\nt0000004.wav,0,0,0\n"
)
SUBMISSION_PRIVATE_CSV = (
    "fname,Bass_drum,Male_speech_and_man_speaking,Stream\n"
    "t0000001.wav,0,0,0\nt0000003.wav,0,0,0\nt0000004.wav,0,0,0\n"
)


# --------------------------------------------------------------------------- building archives


def wav_bytes(seed: int, seconds: float = 0.05) -> bytes:
    """A 16-bit PCM mono 44.1 kHz WAV of noise (barely compressible)."""
    samples = np.random.default_rng(seed).integers(-3000, 3000, int(44100 * seconds), np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            if name.endswith("/"):
                z.writestr(zipfile.ZipInfo(name), b"")
            else:
                z.writestr(name, data)
    return buf.getvalue()


def csv_text(header: str, rows, newline: str = "\n") -> str:
    lines = [header]
    for row in rows:
        lines.append(",".join(f'"{c}"' if "," in c else c for c in row))
    return newline.join(lines) + newline


_CENTRAL = "<4s4B4HL2L5H2L"


def split_zip(data: bytes, n_parts: int = 7, zip64: bool = False) -> list[bytes]:
    """Turn a normal zip into an ``n_parts`` split archive laid out as Info-ZIP ``zip -s``.

    The first part starts with the spanning signature; the local headers and data run on
    across equal-sized parts (members are cut anywhere, headers included); the central
    directory and end records sit in the last part; each central entry records the disk
    its local header starts on and the offset inside that disk. With ``zip64`` the disk
    and offset fields are saturated and given in a Zip64 extra field, and the end records
    are Zip64 ones.
    """
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, _, count, _, cd_offset, _ = struct.unpack_from("<4s4H2LH", data, eocd)
    stream = b"PK\x07\x08" + data[:cd_offset]
    size = (len(stream) - 1) // (n_parts - 1)
    parts = [stream[i * size : (i + 1) * size] for i in range(n_parts - 1)]
    last = bytearray(stream[(n_parts - 1) * size :])
    cd, pos = bytearray(), cd_offset
    for _ in range(count):
        fields = list(struct.unpack_from(_CENTRAL, data, pos))
        n, m, k = fields[12:15]
        name_at = pos + 46
        name, extra = data[name_at : name_at + n], data[name_at + n : name_at + n + m]
        comment = data[name_at + n + m : name_at + n + m + k]
        logical = fields[18] + 4
        disk = min(logical // size, n_parts - 1)
        rel = logical - disk * size
        if zip64:
            fields[15], fields[18] = 0xFFFF, 0xFFFFFFFF
            extra += struct.pack("<HHQL", 1, 12, rel, disk)
            fields[13] = len(extra)
        else:
            fields[15], fields[18] = disk, rel
        cd += struct.pack(_CENTRAL, *fields) + name + extra + comment
        pos = name_at + n + m + k
    cd_rel, last_disk = len(last), n_parts - 1
    last += cd
    if zip64:
        z_rel = len(last)
        last += struct.pack(
            "<4sQ2H2L4Q",
            b"PK\x06\x06",
            44,
            45,
            45,
            last_disk,
            last_disk,
            count,
            count,
            len(cd),
            cd_rel,
        )
        last += struct.pack("<4sLQL", b"PK\x06\x07", last_disk, z_rel, n_parts)
        last += struct.pack("<4s4H2LH", b"PK\x05\x06", *[0xFFFF] * 4, *[0xFFFFFFFF] * 2, 0)
    else:
        last += struct.pack(
            "<4s4H2LH", b"PK\x05\x06", last_disk, last_disk, count, count, len(cd), cd_rel, 0
        )
    return parts + [bytes(last)]


class FakeData:
    """The stand-in record: every file's bytes, and the WAVs each set must end up with."""

    def __init__(self) -> None:
        self.curated = {f: wav_bytes(i) for i, (f, _) in enumerate(CURATED)}
        self.noisy = {f: wav_bytes(100 + i, 0.1) for i, (f, _) in enumerate(NOISY_ROWS)}
        self.test = {f: wav_bytes(200 + i) for i, (f, *_) in enumerate(TEST_ROWS)}
        self.meta_csvs = {
            "train_curated_post_competition.csv": csv_text(
                "fname,labels,freesound_id,license",
                [(f, lab, str(1000 + i), "CC0") for i, (f, lab) in enumerate(CURATED)],
                newline="\r\n",
            ),
            "train_noisy_post_competition.csv": csv_text(
                "fname,labels,flickr_video_URL,license",
                [(f, lab, "http://example.org/v", "CC BY 2.0") for f, lab in NOISY_ROWS],
            ),
            "test_post_competition.csv": csv_text(
                "fname,labels,usage,freesound_id,license",
                [(f, lab, use, "7", "CC-BY") for f, lab, use in TEST_ROWS],
            ),
            "vocabulary.csv": "".join(f"{i},{c}\n" for i, c in enumerate(CLASSES)),
        }
        self.noisy_zip = make_zip(
            {f"{NOISY}/": b""} | {f"{NOISY}/{f}": b for f, b in self.noisy.items()}
        )
        self.files = {
            CURATED_ZIP: self._folder_zip("FSDKaggle2019.audio_train_curated", self.curated),
            TEST_ZIP: self._folder_zip("FSDKaggle2019.audio_test", self.test),
            META_ZIP: make_zip(
                {f"FSDKaggle2019.meta/{n}": t.encode() for n, t in self.meta_csvs.items()}
            ),
            "FSDKaggle2019.doc.zip": make_zip(
                {
                    "FSDKaggle2019.doc/README.md": b"# FSDKaggle2019\n",
                    "FSDKaggle2019.doc/LICENSE-DATASET": b"CC BY 4.0\n",
                }
            ),
        } | dict(zip(NOISY_PARTS, split_zip(self.noisy_zip)))

    @staticmethod
    def _folder_zip(folder: str, files: dict[str, bytes]) -> bytes:
        return make_zip({f"{folder}/": b""} | {f"{folder}/{f}": b for f, b in files.items()})


@pytest.fixture(scope="module")
def fake() -> FakeData:
    return FakeData()


# --------------------------------------------------------------------------- the server


class FakeZenodo(ThreadingHTTPServer):
    """Serves the record JSON and the files, with injectable faults.

    Attributes:
        files: file name to bytes (served at ``/api/records/3612637/files/NAME/content``).
        md5_override: file name to the MD5 the record JSON claims instead of the real one.
        drop_after: file name to N: the next GET sends N bytes and closes (once).
        ignore_range: file names for which ``Range`` is ignored (plain 200).
        fail_status: file name to a list of statuses answered before serving it.
        requests: ``(path, Range header)`` of every GET.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(files)
        self.md5_override: dict[str, str] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.fail_status: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def record_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{RECORD_PATH}"

    def record(self) -> dict:
        entries = [
            {
                "key": key,
                "size": len(data),
                "checksum": "md5:" + self.md5_override.get(key, hashlib.md5(data).hexdigest()),
                "links": {"self": f"{self.record_url}/files/{key}/content"},
            }
            for key, data in self.files.items()
        ]
        return {"id": 3612637, "files": entries}

    def file_gets(self, key: str) -> list[str | None]:
        """The Range headers of the GETs of one file."""
        return [r for p, r in self.requests if p == f"{RECORD_PATH}/files/{key}/content"]


class _Handler(BaseHTTPRequestHandler):
    server: FakeZenodo

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path == RECORD_PATH:
            self._send(200, json.dumps(srv.record()).encode(), {"Content-Type": "application/json"})
            return
        m = re.fullmatch(re.escape(RECORD_PATH) + r"/files/(.+)/content", self.path)
        key = m.group(1) if m else None
        if key not in srv.files:
            self._send(404, b"not found")
            return
        if srv.fail_status.get(key):
            self._send(srv.fail_status[key].pop(0), b"try later")
            return
        self._send_file(key, srv.files[key])

    def _send_file(self, key: str, data: bytes) -> None:
        srv = self.server
        start, headers = 0, {}
        rng = self.headers.get("Range")
        if rng and key not in srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self._send(416, b"")
                return
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = srv.drop_after.pop(key, None)
        self._send(206 if headers else 200, body, headers, cut=cut)

    def _send(self, status: int, body: bytes, headers=None, cut: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def zenodo(fake, monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = FakeZenodo(fake.files)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def quiet(**kwargs) -> DownloadOptions:
    return DownloadOptions(timeout=5.0, backoff=0.0, out=io.StringIO(), **kwargs)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --------------------------------------------------------------------------- (1) happy path


def test_happy_path_end_to_end(zenodo, fake, tmp_path, capsys):
    dest = tmp_path / "fat"
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url)
    assert code == 0, err
    assert f"FAT2019 dataset ready: {dest}" in out and "classes: 3" in out
    assert "warning" not in out

    ds = load_dataset(dest)  # the full check, WAV headers included
    assert ds.class_names == CLASSES
    assert set(ds.curated.fnames) == {"00aa11bb.wav", "0a1b2c3d.wav", "c0ffee00.wav"}
    assert len(ds.noisy) == 8 and len(ds.test) == 4 and ds.test.labels is not None
    for fname in ds.curated.fnames:
        assert (dest / "train_curated" / fname).read_bytes() == fake.curated[fname]
    assert {p.name: p.read_bytes() for p in (dest / "train_noisy").iterdir()} == fake.noisy
    assert {p.name: p.read_bytes() for p in (dest / "test").iterdir()} == fake.test

    assert (dest / "train_curated.csv").read_bytes() == CURATED_DROPPED_CSV.encode()
    noisy_csv = (dest / "train_noisy.csv").read_text()
    assert noisy_csv.splitlines()[0] == "fname,labels" and "\r" not in noisy_csv
    assert '"Stream,Bass_drum,Male_speech_and_man_speaking"' in noisy_csv
    assert (dest / "sample_submission.csv").read_bytes() == SUBMISSION_ALL_CSV.encode()
    test_csv = fake.meta_csvs["test_post_competition.csv"]
    assert (dest / "test_post_competition.csv").read_text() == test_csv
    assert sorted(p.name for p in (dest / "train_curated_excluded").iterdir()) == [
        "77b925c2.wav",
        "f76181c4.wav",
    ]
    leftovers = [p for p in files_under(dest) if p.endswith((".part", ".partial", ".tmp"))]
    assert not leftovers

    # re-running downloads nothing, not even the record JSON, and changes nothing
    n_requests = len(zenodo.requests)
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url)
    assert code == 0, err
    assert len(zenodo.requests) == n_requests
    assert "already downloaded and verified" in err and "already there, skipped" in err
    assert "train_curated.csv: up to date" in err

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "fat_tf.data", "check", str(dest)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"{dest}: OK")


def test_private_test_clips_reproduce_kaggle_submission(zenodo, tmp_path, capsys):
    dest = tmp_path / "fat"
    args = ["--dest", str(dest), "--record-url", zenodo.record_url, "--subset", "curated,test"]
    code, out, err = run_main(capsys, *args, "--test-clips", "private")
    assert code == 0, err
    assert (dest / "sample_submission.csv").read_bytes() == SUBMISSION_PRIVATE_CSV.encode()
    assert "1 audio file(s) not listed" in out  # the public clip stays in test/
    assert not (dest / "train_noisy").exists() and not (dest / "train_noisy.csv").exists()


def test_partial_subsets_and_remove_archives(zenodo, tmp_path, capsys):
    dest = tmp_path / "fat"
    base = ["--dest", str(dest), "--record-url", zenodo.record_url, "--remove-archives"]
    code, out, err = run_main(capsys, *base, "--subset", "curated,doc")
    assert code == 0, err
    assert "not loadable yet: test/ missing" in out
    assert (dest / "doc" / "README.md").read_text() == "# FSDKaggle2019\n"
    assert not (dest / "sample_submission.csv").exists()
    kept = sorted(p.name for p in (dest / "downloads").iterdir())
    assert kept == [META_ZIP, "verified.json"]  # the meta zip is always kept

    code, out, err = run_main(capsys, *base, "--subset", "test,curated")
    assert code == 0, err
    assert zenodo.file_gets(CURATED_ZIP) == [None]  # extracted before: not fetched again
    assert load_dataset(dest, check_audio=False).noisy is None


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--dest", "--subset", "--fix-labels", "--kaggle-zip", "--record-url", "3612637"):
        assert word in text
    with pytest.raises(SystemExit) as info:
        main(["--dest", "x", "--subset", "curated,bogus"])
    assert info.value.code == 2
    result = subprocess.run(
        [sys.executable, "-m", "fat_tf.data.fetch.download", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0 and "--kaggle-zip" in result.stdout


def test_data_cli_forwards_download(tmp_path, capsys):
    from fat_tf.data.__main__ import main as data_main

    with pytest.raises(SystemExit) as info:
        data_main(["download", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: python -m fat_tf.data download" in text and "--kaggle-zip" in text
    with pytest.raises(SystemExit) as info:
        data_main(["download"])
    assert info.value.code == 2 and "--dest" in capsys.readouterr().err
    dest, missing = tmp_path / "fat", tmp_path / "no.zip"
    assert data_main(["download", "--dest", str(dest), "--kaggle-zip", str(missing)]) == 1
    assert "not a readable zip archive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        data_main(["check", str(tmp_path), "--bogus"])
    assert info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


# --------------------------------------------------------------------------- (2) interruptions


def test_interrupted_transfer_resumes_with_range(zenodo, fake, tmp_path):
    zenodo.drop_after[CURATED_ZIP] = 1000
    options = quiet()
    prepare_from_zenodo(
        tmp_path / "fat", subsets=["curated"], record_url=zenodo.record_url, options=options
    )
    assert zenodo.file_gets(CURATED_ZIP) == [None, "bytes=1000-"]
    path = tmp_path / "fat" / "downloads" / CURATED_ZIP
    assert path.read_bytes() == fake.files[CURATED_ZIP]
    assert "connection closed after 1000 of" in options.out.getvalue()


def test_rerun_resumes_a_failed_download(zenodo, fake, tmp_path):
    zenodo.drop_after[TEST_ZIP] = 700
    dest = tmp_path / "fat"
    with pytest.raises(DownloadError, match=r"FSDKaggle2019.audio_test.zip: failed after 1"):
        prepare_from_zenodo(
            dest, subsets=["test"], record_url=zenodo.record_url, options=quiet(retries=0)
        )
    part = dest / "downloads" / f"{TEST_ZIP}.part"
    assert part.stat().st_size == 700 and not (dest / "test").exists()
    prepare_from_zenodo(
        dest, subsets=["test"], record_url=zenodo.record_url, options=quiet(retries=0)
    )
    assert zenodo.file_gets(TEST_ZIP) == [None, "bytes=700-"]
    assert not part.exists()
    assert {p.name for p in (dest / "test").iterdir()} == set(fake.test)


def test_server_ignoring_range_restarts_cleanly(zenodo, fake, tmp_path):
    zenodo.ignore_range.add(META_ZIP)
    data = fake.files[META_ZIP]
    path = tmp_path / META_ZIP
    Path(f"{path}.part").write_bytes(b"x" * 300)  # junk from an earlier attempt
    remote = RemoteFile(
        META_ZIP,
        len(data),
        hashlib.md5(data).hexdigest(),
        f"{zenodo.record_url}/files/{META_ZIP}/content",
    )
    options = quiet()
    download_file(remote, path, options)
    assert zenodo.file_gets(META_ZIP) == ["bytes=300-"]
    assert path.read_bytes() == data
    assert "ignored the Range request" in options.out.getvalue()


def test_transient_status_is_retried_and_404_is_not(zenodo, fake, tmp_path):
    zenodo.fail_status[META_ZIP] = [503, 500]
    options = quiet()
    prepare_from_zenodo(tmp_path / "a", subsets=[], record_url=zenodo.record_url, options=options)
    assert len(zenodo.file_gets(META_ZIP)) == 3
    assert "HTTP 503" in options.out.getvalue()
    remote = RemoteFile("nope.zip", 1, "0" * 32, f"{zenodo.record_url}/files/nope.zip/content")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(remote, tmp_path / "nope.zip", quiet(retries=3))
    assert len(zenodo.file_gets("nope.zip")) == 1


def test_unreachable_server_gives_up_after_retries(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = RemoteFile("x.zip", 10, "0" * 32, f"http://127.0.0.1:{port}/x.zip")
    with pytest.raises(DownloadError, match=r"x.zip: failed after 3 attempt\(s\)"):
        download_file(remote, tmp_path / "x.zip", quiet(retries=2))


def test_not_enough_disk_space_fails_early(fake, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=100))
    data = fake.files[TEST_ZIP]
    remote = RemoteFile(TEST_ZIP, len(data), hashlib.md5(data).hexdigest(), "http://unused/")
    with pytest.raises(DownloadError, match=rf"{TEST_ZIP}: not enough disk space in .*GB free"):
        download_file(remote, tmp_path / TEST_ZIP, quiet())
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- (3) checksums


def test_checksum_mismatch_names_file_and_removes_it(zenodo, fake, tmp_path, capsys):
    zenodo.md5_override[META_ZIP] = "0" * 32
    dest = tmp_path / "fat"
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url)
    assert code == 1
    real = hashlib.md5(fake.files[META_ZIP]).hexdigest()
    assert f"error: {META_ZIP}: MD5 checksum mismatch: expected {'0' * 32}, got {real}" in err
    assert "removed the corrupt file" in err and "Traceback" not in err
    assert sorted(os.listdir(dest / "downloads")) == []


def test_size_mismatch_and_corrupt_local_copy(zenodo, fake, tmp_path):
    data = fake.files[TEST_ZIP]
    remote = RemoteFile(
        TEST_ZIP,
        len(data) - 5,
        hashlib.md5(data).hexdigest(),
        f"{zenodo.record_url}/files/{TEST_ZIP}/content",
    )
    # the server sends 5 bytes more than declared: only the declared size is written
    # (tests/test_hostile_inputs.py), and those bytes fail the MD5 check
    cut = hashlib.md5(data[:-5]).hexdigest()
    with pytest.raises(ChecksumError, match=rf"MD5 checksum mismatch: expected "
                                            rf"{hashlib.md5(data).hexdigest()}, got {cut}"):
        download_file(remote, tmp_path / TEST_ZIP, quiet(retries=0))
    assert not (tmp_path / f"{TEST_ZIP}.part").exists()

    # a corrupt archive already in the archive folder is replaced by a fresh download
    dest = tmp_path / "fat"
    (dest / "downloads").mkdir(parents=True)
    (dest / "downloads" / META_ZIP).write_bytes(b"garbage")
    options = quiet()
    prepare_from_zenodo(dest, subsets=[], record_url=zenodo.record_url, options=options)
    assert (dest / "downloads" / META_ZIP).read_bytes() == fake.files[META_ZIP]
    assert "size mismatch" in options.out.getvalue()


# --------------------------------------------------------------------------- (4) unsafe archives


@pytest.mark.parametrize(
    "evil", ["../evil.wav", "FSDKaggle2019.audio_train_curated/../../evil.wav", "ABS"]
)
def test_malicious_member_is_rejected_end_to_end(zenodo, fake, tmp_path, capsys, evil):
    if evil == "ABS":
        evil = str(tmp_path / "abs_evil.wav")
    members = {"FSDKaggle2019.audio_train_curated/00aa11bb.wav": fake.curated["00aa11bb.wav"]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(zipfile.ZipInfo(evil), b"RIFF evil")
    zenodo.files[CURATED_ZIP] = buf.getvalue()
    dest = tmp_path / "sub" / "fat"
    code, _, err = run_main(
        capsys, "--dest", str(dest), "--record-url", zenodo.record_url, "--subset", "curated"
    )
    assert code == 1
    assert f"error: {CURATED_ZIP}: unsafe member {evil!r}" in err
    assert "nothing was extracted" in err
    assert not [p for p in files_under(tmp_path) if "evil" in p]
    assert not (dest / "train_curated").exists()
    assert not [p for p in os.listdir(dest) if p.endswith(".partial")]


def _member(name: str, mode: int = 0o100644) -> ArchiveMember:
    return ArchiveMember(name, 1, mode, name.endswith("/"), None)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../x.wav", "'..' component"),
        ("a/../../x.wav", "'..' component"),
        ("a\\..\\x.wav", "'..' component"),
        ("/etc/x.wav", "absolute path"),
        ("\\x.wav", "absolute path"),
        ("C:/x.wav", "drive letter"),
        ("c:x.wav", "drive letter"),
        ("a\x00b.wav", "NUL byte"),
    ],
)
def test_check_member_name_rejects(name, problem):
    with pytest.raises(ArchiveError, match=re.escape(problem)) as info:
        check_member_name("a.zip", _member(name))
    assert str(info.value).startswith(f"a.zip: unsafe member {name!r}")


def test_check_member_name_accepts_and_splits():
    assert check_member_name("a.zip", _member("d/./x.wav")) == ("d", "x.wav")
    assert check_member_name("a.zip", _member("d/", 0o40755)) == ("d",)
    assert check_member_name("a.zip", _member("x..y.wav", 0)) == ("x..y.wav",)
    with pytest.raises(ArchiveError, match="symbolic link"):
        check_member_name("a.zip", _member("link.wav", stat.S_IFLNK | 0o777))
    with pytest.raises(ArchiveError, match="special file"):
        check_member_name("a.zip", _member("fifo", stat.S_IFIFO | 0o644))


def test_symlink_member_is_not_extracted(tmp_path):
    info = zipfile.ZipInfo("top/link.wav")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("top/ok.wav", b"ok")
        z.writestr(info, "/etc/passwd")
    with ZipArchive(path) as archive, pytest.raises(ArchiveError, match="'top/link.wav'"):
        extract_archive(archive, tmp_path / "out", quiet())
    assert sorted(os.listdir(tmp_path)) == ["links.zip"]


def test_corrupt_member_leaves_no_half_extracted_folder(tmp_path):
    noise = np.random.default_rng(1).bytes(5000)
    data = bytearray(make_zip({"top/a.wav": noise, "top/b.wav": noise[::-1]}))
    at = data.find(b"top/b.wav") + 2000  # inside b.wav's data
    data[at] ^= 0xFF
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(data))
    with (
        ZipArchive(path) as archive,
        pytest.raises(ArchiveError, match="bad.zip: member 'top/b.wav'"),
    ):
        extract_archive(archive, tmp_path / "out", quiet())
    assert sorted(os.listdir(tmp_path)) == ["bad.zip"]


# --------------------------------------------------------------------------- (5) split archives


def _write_parts(folder: Path, parts: list[bytes], stem: str = "x") -> list[Path]:
    names = [f"{stem}.z{i:02d}" for i in range(1, len(parts))] + [f"{stem}.zip"]
    for name, data in zip(names, parts):
        (folder / name).write_bytes(data)
    return [folder / n for n in names]


def _boundaries_inside_members(zip_bytes: bytes, parts: list[bytes]) -> int:
    """How many part boundaries cut through a member (local header or data)."""
    size = len(parts[0])
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        spans = [
            (4 + i.header_offset, 4 + i.header_offset + 30 + len(i.filename) + i.compress_size)
            for i in z.infolist()
        ]
    return sum(any(a < k * size < b for a, b in spans) for k in range(1, len(parts)))


@pytest.mark.parametrize("zip64", [False, True], ids=["zip32", "zip64"])
def test_split_archive_joins(fake, tmp_path, zip64):
    parts = split_zip(fake.noisy_zip, 7, zip64=zip64)
    paths = _write_parts(tmp_path, parts)
    assert _boundaries_inside_members(fake.noisy_zip, parts) == 6
    with pytest.raises(zipfile.BadZipFile), zipfile.ZipFile(paths[-1]) as z:
        z.read(z.namelist()[1])  # the standard library cannot read it
    with SplitZipArchive(paths) as archive:
        names = [m.name for m in archive.members()]
        assert names == [f"{NOISY}/"] + [f"{NOISY}/{f}" for f in fake.noisy]
        assert extract_archive(archive, tmp_path / "out", quiet()) == len(fake.noisy)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == fake.noisy


def test_split_archive_errors(fake, tmp_path):
    paths = _write_parts(tmp_path, split_zip(fake.noisy_zip, 7))
    with pytest.raises(ArchiveError, match=r"has 7 part\(s\) but 6 were given"):
        SplitZipArchive(paths[1:])
    with pytest.raises(ArchiveError, match="no zip end-of-central-directory record"):
        SplitZipArchive(paths[:-1])
    data = bytearray(paths[3].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths[3].write_bytes(bytes(data))
    with SplitZipArchive(paths) as archive, pytest.raises(ArchiveError, match="corrupt data"):
        extract_archive(archive, tmp_path / "out", quiet())
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip not installed")
def test_split_archive_made_by_info_zip(tmp_path):
    src = tmp_path / "FSD.noisy"
    src.mkdir()
    rng = np.random.default_rng(0)
    files = {}
    for i in range(6):  # half noise (stored-like), half compressible: deflate across parts
        data = rng.bytes(30_000) + bytes(40_000)
        files[f"{i:08x}.wav"] = data
        (src / f"{i:08x}.wav").write_bytes(data)
    subprocess.run(
        ["zip", "-q", "-r", "-s", "64k", "noisy.zip", "FSD.noisy"],
        cwd=tmp_path,
        check=True,
        timeout=30,
    )
    parts = sorted(tmp_path.glob("noisy.z[0-9][0-9]")) + [tmp_path / "noisy.zip"]
    assert len(parts) >= 3
    with SplitZipArchive(parts) as archive:
        extract_archive(archive, tmp_path / "out", quiet())
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == files


# --------------------------------------------------------------------------- (6) Kaggle zip


def kaggle_zip(fake: FakeData, path: Path, compression: int, folders: bool = False) -> None:
    inner = {
        "train_curated": fake.curated,
        "train_noisy": fake.noisy,
        "test": {f: b for f, b in fake.test.items() if f != "t0000002.wav"},  # private only
    }
    members = {
        "train_curated.csv": CURATED_KAGGLE_CSV.encode(),
        "train_noisy.csv": kaggle_labels_csv(NOISY_ROWS).encode(),
        "sample_submission.csv": SUBMISSION_PRIVATE_CSV.encode(),
    }
    for folder, wavs in inner.items():
        if folders:
            members |= {f"{folder}/{f}": b for f, b in wavs.items()}
        else:
            members[f"{folder}.zip"] = make_zip(wavs)
    path.write_bytes(make_zip(members, compression))


@pytest.mark.parametrize(
    "compression, folders",
    [(zipfile.ZIP_STORED, False), (zipfile.ZIP_DEFLATED, False), (zipfile.ZIP_DEFLATED, True)],
    ids=["stored-inner-zips", "deflated-inner-zips", "folders"],
)
def test_kaggle_zip(fake, tmp_path, capsys, compression, folders):
    path = tmp_path / "freesound-audio-tagging-2019.zip"
    kaggle_zip(fake, path, compression, folders)
    dest = tmp_path / "fat"
    code, out, err = run_main(capsys, "--dest", str(dest), "--kaggle-zip", str(path))
    assert code == 0, err
    ds = load_dataset(dest)
    assert len(ds.curated) == 3 and len(ds.noisy) == 8 and len(ds.test) == 3
    assert ds.test.labels is None  # the Kaggle zip has no test labels
    assert (dest / "sample_submission.csv").read_bytes() == SUBMISSION_PRIVATE_CSV.encode()
    assert (dest / "train_curated.csv").read_bytes() == CURATED_DROPPED_CSV.encode()
    assert (dest / "train_noisy.csv").read_text() == kaggle_labels_csv(NOISY_ROWS)
    assert (dest / "train_noisy" / "00000001.wav").read_bytes() == fake.noisy["00000001.wav"]
    assert not [p for p in files_under(dest) if p.endswith((".tmp", ".partial"))]

    code, out, err = run_main(
        capsys, "--dest", str(dest), "--kaggle-zip", str(path), "--fix-labels", "keep"
    )
    assert code == 0, err
    assert "train_curated/: already there, skipped" in err
    assert (dest / "train_curated.csv").read_bytes() == CURATED_KAGGLE_CSV.encode()
    assert not (dest / "train_curated_excluded").exists()


def test_kaggle_zip_missing_parts(tmp_path, capsys):
    path = tmp_path / "k.zip"
    path.write_bytes(make_zip({"train_curated.csv": b"fname,labels\n"}))
    code, _, err = run_main(capsys, "--dest", str(tmp_path / "fat"), "--kaggle-zip", str(path))
    assert code == 1
    assert "has neither train_curated.zip nor audio_curated.zip nor a train_curated/ folder" in err
    code, _, err = run_main(
        capsys, "--dest", str(tmp_path / "f2"), "--kaggle-zip", str(tmp_path / "no.zip")
    )
    assert code == 1 and "not a readable zip archive" in err


# --------------------------------------------------------------------------- (7) mislabelled clips


def test_fix_labels_modes(zenodo, fake, tmp_path, capsys):
    dest = tmp_path / "fat"
    base = ["--dest", str(dest), "--record-url", zenodo.record_url, "--subset", "curated,test"]
    curated, aside = dest / "train_curated", dest / "train_curated_excluded"

    assert run_main(capsys, *base, "--fix-labels", "relabel")[0] == 0
    ds = load_dataset(dest)
    labels = dict(zip(ds.curated.fnames, ds.curated.label_sets()))
    assert labels["f76181c4.wav"] == {"Bass_drum"} and "77b925c2.wav" not in labels
    assert sorted(os.listdir(aside)) == ["77b925c2.wav"]

    code, out, err = run_main(capsys, *base, "--fix-labels", "keep")
    assert code == 0 and "warning" not in out
    assert (dest / "train_curated.csv").read_bytes() == CURATED_KAGGLE_CSV.encode()
    assert not aside.exists() and (curated / "77b925c2.wav").exists()

    code, out, err = run_main(capsys, *base)  # default: drop
    assert code == 0 and "warning" not in out
    assert (dest / "train_curated.csv").read_bytes() == CURATED_DROPPED_CSV.encode()
    assert sorted(os.listdir(aside)) == ["77b925c2.wav", "f76181c4.wav"]
    assert "dropped 77b925c2.wav, f76181c4.wav" in err
    assert zenodo.file_gets(CURATED_ZIP) == [None]  # downloaded once for all three runs


def test_apply_label_fixes_table():
    rows = [(f, "Male_speech_and_man_speaking") for f in record.MISLABELLED_CURATED] + [
        ("a.wav", "Bark")
    ]
    names = {"Bass_drum", "Marimba_and_xylophone", "Dishes_and_pots_and_pans", "Chink_and_clink"}
    kept, dropped, relabelled = apply_label_fixes(rows, "relabel", names)
    assert sorted(dropped) == ["1d44b0bd.wav", "6a1f682a.wav", "77b925c2.wav"]
    assert dict(kept)["7752cc8a.wav"] == "Dishes_and_pots_and_pans,Chink_and_clink"
    assert len(relabelled) == 3 and kept[-1] == ("a.wav", "Bark")
    kept, dropped, _ = apply_label_fixes(rows, "drop", names)
    assert kept == [("a.wav", "Bark")] and len(dropped) == 6
    assert apply_label_fixes(rows, "keep", names)[0] == rows
    with pytest.raises(ValueError, match="fix_labels"):
        apply_label_fixes(rows, "fix", names)
    with pytest.raises(DataError, match="unknown class"):
        apply_label_fixes(rows, "relabel", {"Bass_drum"})


# --------------------------------------------------------------------------- units


def test_parse_record_forms():
    entry = {"key": "a.zip", "size": 3, "checksum": "md5:" + "A" * 32}
    base = "https://zenodo.org/api/records/1"
    legacy = parse_record({"files": [entry | {"links": {"self": "/f/a.zip/content"}}]}, base)
    assert legacy["a.zip"] == RemoteFile("a.zip", 3, "a" * 32, "https://zenodo.org/f/a.zip/content")
    rdm = parse_record({"files": {"entries": {"a.zip": entry}}}, base)
    assert rdm["a.zip"].url == f"{base}/files/a.zip/content"
    with pytest.raises(DownloadError, match="is not 'md5:<32 hex digits>'"):
        parse_record({"files": [entry | {"checksum": "sha256:00"}]}, base)
    with pytest.raises(DownloadError, match="no 'files' list"):
        parse_record({"hits": []}, base)


def test_csv_writers():
    rows = [("b.wav", "Bark,Hiss"), ("a.wav", "Hiss")]
    assert kaggle_labels_csv(rows) == 'fname,labels\na.wav,Hiss\nb.wav,"Bark,Hiss"\n'
    test_csv = "fname,labels,usage\r\nz.wav,Bark,Private\r\ny.wav,Hiss,Public\r\n"
    assert (
        sample_submission_csv(["Bark", "Hiss"], test_csv)
        == "fname,Bark,Hiss\ny.wav,0,0\nz.wav,0,0\n"
    )
    assert sample_submission_csv(["Bark"], test_csv, "private") == "fname,Bark\nz.wav,0\n"
    assert read_vocabulary("0,A\n1,B\n") == ("A", "B")
    with pytest.raises(DataError, match="sorted order"):
        read_vocabulary("0,B\n1,A\n")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines():
    tty = _Tty()
    p = Progress("a.zip", 2_000_000, DownloadOptions(out=tty), done=1_000_000)
    p.update(500_000)
    p.close()
    text = tty.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    assert "a.zip: 1.5/2.0 MB (75%)" in text and "MB/s" in text
    log = io.StringIO()
    p = Progress("b.zip", 100, DownloadOptions(out=log, progress_interval=0.0))
    p.update(50)
    p.close()
    assert log.getvalue().splitlines()[0].startswith("b.zip: 0.0/0.0 MB (50%)")
    assert len(log.getvalue().splitlines()) == 2 and "\r" not in log.getvalue()


# --------------------------------------------------------------------------- ETA and --dry-run


def test_progress_shows_eta_then_time_taken(monkeypatch):
    from fat_tf.data.fetch import progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    p = Progress("c.zip", 10_000_000, DownloadOptions(out=log, progress_interval=0.0))
    clock[0] = 102.0
    p.update(2_000_000)  # 1 MB/s, 8 MB left: 8 s
    clock[0] = 230.0
    p.update(6_000_000)  # 8 MB in 130 s, 2 MB left: 32.5 s
    clock[0] = 300.0
    p.update(2_000_000)
    p.close()
    lines = log.getvalue().splitlines()
    assert lines[0] == "c.zip: 2.0/10.0 MB (20%) 1.0 MB/s, ETA 8s"
    assert lines[1].endswith("ETA 32s")
    assert lines[-1] == "c.zip: 10.0/10.0 MB (100%) 0.1 MB/s, took 3m20s"
    stalled = Progress("d.zip", 5, DownloadOptions(out=io.StringIO()))
    assert stalled.line(clock[0]).endswith("ETA unknown")
    assert [progress.format_duration(s) for s in (0, 59.4, 61, 3600 * 2 + 7 * 60)] == [
        "0s", "59s", "1m01s", "2h07m"]


def test_dry_run_lists_files_and_downloads_nothing(zenodo, fake, tmp_path, capsys):
    dest = tmp_path / "fat"
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url,
                              "--dry-run")
    assert code == 0, err
    assert zenodo.requests == [(RECORD_PATH, None)]  # the file list only
    assert not dest.exists()
    assert out.startswith("dry run: nothing is downloaded or written")
    listed = {line.split()[0]: line for line in out.splitlines()[2:] if line.startswith("  ")}
    expected = [META_ZIP, CURATED_ZIP, TEST_ZIP, *NOISY_PARTS]
    assert sorted(listed) == sorted(expected)
    for name in expected:
        data = fake.files[name]
        assert hashlib.md5(data).hexdigest() in listed[name] and "to download" in listed[name]
    total = sum(len(fake.files[n]) for n in expected)
    assert f"total: {len(expected)} file(s)" in out
    assert f"to download: {plan._size_text(total)}" in out and "free on that disk" in out

    # after a partial run: verified files and an existing subset folder are reported as such
    prepare_from_zenodo(dest, subsets=["curated"], record_url=zenodo.record_url, options=quiet())
    part = dest / "downloads" / (TEST_ZIP + ".part")
    part.write_bytes(fake.files[TEST_ZIP][:100])
    before = files_under(dest)
    zenodo.requests.clear()
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url,
                              "--dry-run", "--subset", "curated,test")
    assert code == 0, err
    assert files_under(dest) == before and zenodo.requests == [(RECORD_PATH, None)]
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "already downloaded and verified" in lines[META_ZIP]
    assert CURATED_ZIP not in lines and "train_curated/: already there" in out
    assert "partial (0.0 MB on disk), resumes" in lines[TEST_ZIP]
    assert f"to download: {plan._size_text(len(fake.files[TEST_ZIP]) - 100)}" in out

    # everything needed already verified: not even the record is read
    zenodo.requests.clear()
    code, out, err = run_main(capsys, "--dest", str(dest), "--record-url", zenodo.record_url,
                              "--dry-run", "--subset", "curated")
    assert code == 0, err
    assert zenodo.requests == [] and "to download: 0 B" in out


def test_dry_run_names_a_file_missing_from_the_record(zenodo, tmp_path, capsys):
    del zenodo.files[TEST_ZIP]
    code, out, err = run_main(capsys, "--dest", str(tmp_path / "fat"), "--record-url",
                              zenodo.record_url, "--dry-run")
    assert code == 1 and f"the record has no file {TEST_ZIP!r}" in err
    assert not (tmp_path / "fat").exists()


def test_dry_run_of_a_kaggle_zip(fake, tmp_path, capsys):
    path = tmp_path / "kaggle.zip"
    kaggle_zip(fake, path, zipfile.ZIP_DEFLATED, False)
    dest = tmp_path / "fat"
    code, out, err = run_main(capsys, "--dest", str(dest), "--kaggle-zip", str(path),
                              "--dry-run")
    assert code == 0, err
    assert not dest.exists()
    for name in ("train_curated.zip", "train_noisy.zip", "test.zip"):
        assert f"  {name}  " in out and "to extract" in out
    assert "to download: 0 B" in out

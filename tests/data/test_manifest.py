"""FAT2019 manifests: CSV parsing and validation, audio folder checks, dataset loading."""

from __future__ import annotations

import csv
import io
import os
import wave

import numpy as np
import pytest

from fat_tf.data import (
    DatasetLayout,
    DataWarning,
    load_dataset,
    parse_labels,
    read_class_names,
    read_manifest,
    read_test_manifest,
)
from fat_tf.errors import AudioFormatError, DataError

CLASSES = ("Bark", "Hi-hat", "Hiss", "Slam", "Walk_and_footsteps")
RATE = 44100


# ----------------------------------------------------------------------------- builders


def write_wav(path, seconds=0.1, rate=RATE, channels=1) -> None:
    frames = int(seconds * rate)
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(frames * channels, "<i2").tobytes())


def csv_text(header, rows, newline="\n") -> str:
    """CSV text as Kaggle writes it: minimal quoting (multi-label cells quoted)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def make_set(root, rows, *, name="train_curated", text=None, wavs=None, newline="\n"):
    """Write ``name.csv`` (``rows`` of fname,labels, or raw ``text``) and ``name/`` WAVs.

    ``wavs`` maps fname -> seconds; by default every listed fname gets a 0.1 s clip.
    """
    root = os.fspath(root)
    audio = os.path.join(root, name)
    os.makedirs(audio, exist_ok=True)
    if text is None:
        text = csv_text(("fname", "labels"), rows, newline)
    path = os.path.join(root, f"{name}.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    if wavs is None:
        wavs = {r[0]: 0.1 + 0.1 * i for i, r in enumerate(rows) if r and r[0]}
    for fname, seconds in wavs.items():
        write_wav(os.path.join(audio, fname), seconds)
    return path, audio


ROWS = [
    ("a.wav", "Bark"),
    ("b.wav", "Walk_and_footsteps,Slam"),
    ("c.wav", "Slam,Walk_and_footsteps"),
    ("d.wav", "Hi-hat,Hiss,Bark"),
]


def make_dataset(root, *, noisy=True, test_labels=True):
    """A complete small FAT2019 folder; returns its path."""
    root = os.fspath(root)
    make_set(root, ROWS)
    if noisy:
        make_set(root, [("n1.wav", "Hiss"), ("n2.wav", "Bark,Slam")], name="train_noisy")
    test_rows = [("t1.wav", *[0] * len(CLASSES)), ("t2.wav", *[0] * len(CLASSES))]
    with open(os.path.join(root, "sample_submission.csv"), "w", newline="") as f:
        f.write(csv_text(("fname", *CLASSES), test_rows))
    os.makedirs(os.path.join(root, "test"))
    for fname in ("t1.wav", "t2.wav"):
        write_wav(os.path.join(root, "test", fname), 0.2)
    if test_labels:
        rows = [
            ("t0.wav", "Hiss", "Public", "1", "CC0"),
            ("t2.wav", "Slam,Bark", "Private", "2", "CC0"),
            ("t1.wav", "Hiss", "Private", "3", "CC-BY"),
        ]
        header = ("fname", "labels", "usage", "freesound_id", "license")
        with open(os.path.join(root, "test_post_competition.csv"), "w", newline="") as f:
            f.write(csv_text(header, rows))
    return root


def error_of(fn, *args, cls=DataError, **kwargs) -> str:
    with pytest.raises(cls) as e:
        fn(*args, **kwargs)
    return str(e.value)


# ----------------------------------------------------------------------------- round trip


def test_round_trip_parses_quoted_multi_labels_as_sets(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    assert '"Walk_and_footsteps,Slam"' in open(path).read()
    m = read_manifest(path, audio, CLASSES)
    assert len(m) == 4
    assert m.fnames == ("a.wav", "b.wav", "c.wav", "d.wav")
    assert m.labels.dtype == np.float32 and m.labels.shape == (4, 5)
    np.testing.assert_array_equal(
        m.labels,
        [[1, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 0, 0]],
    )
    assert m.label_sets()[1] == {"Slam", "Walk_and_footsteps"} == m.label_sets()[2]
    assert m.paths == [os.path.join(audio, f) for f in m.fnames]
    np.testing.assert_allclose(m.durations, [0.1, 0.2, 0.3, 0.4], atol=1e-4)
    assert m.class_names == CLASSES and m.num_classes == 5
    assert (m.csv_path, m.audio_dir) == (path, audio)


def test_subset_by_indices_and_mask(tmp_path):
    m = read_manifest(*make_set(tmp_path, ROWS), CLASSES)
    s = m.subset([3, 0])
    assert s.fnames == ("d.wav", "a.wav")
    np.testing.assert_array_equal(s.labels, m.labels[[3, 0]])
    np.testing.assert_array_equal(s.durations, m.durations[[3, 0]])
    assert m.subset(np.array([True, False, True, False])).fnames == ("a.wav", "c.wav")
    assert len(m.subset([])) == 0
    with pytest.raises(ValueError, match="mask"):
        m.subset(np.array([True, False]))


def test_crlf_line_endings(tmp_path):
    lf = read_manifest(*make_set(tmp_path / "lf", ROWS), CLASSES)
    crlf_path, audio = make_set(tmp_path / "crlf", ROWS, newline="\r\n")
    assert b"\r\n" in open(crlf_path, "rb").read()
    crlf = read_manifest(crlf_path, audio, CLASSES)
    assert crlf.fnames == lf.fnames
    np.testing.assert_array_equal(crlf.labels, lf.labels)


def test_utf8_bom_is_accepted(tmp_path):
    text = "\ufeff" + csv_text(("fname", "labels"), ROWS)
    m = read_manifest(*make_set(tmp_path, ROWS, text=text), CLASSES)
    assert m.fnames[0] == "a.wav"


def test_extra_columns_in_any_order_are_ignored(tmp_path):
    rows = [("CC0", r[1], "123", r[0]) for r in ROWS]
    text = csv_text(("license", "labels", "freesound_id", "fname"), rows)
    wavs = {r[0]: 0.1 for r in ROWS}
    m = read_manifest(*make_set(tmp_path, ROWS, text=text, wavs=wavs), CLASSES)
    assert m.fnames == tuple(r[0] for r in ROWS)
    assert m.label_sets()[3] == {"Hi-hat", "Hiss", "Bark"}


def test_blank_lines_are_ignored_and_line_numbers_stay_true(tmp_path):
    text = "fname,labels\n\na.wav,Bark\n\nb.wav,Barx\n"
    msg = error_of(read_manifest, *make_set(tmp_path, [], text=text, wavs={}), CLASSES)
    assert "line 5 (b.wav)" in msg


def test_without_audio_check_durations_are_none(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    write_wav(os.path.join(audio, "a.wav"), channels=2)
    m = read_manifest(path, audio, CLASSES, check_audio=False)
    assert m.durations is None and len(m) == 4


# ----------------------------------------------------------------------------- CSV errors


def bad_csv(tmp_path, text, **kwargs) -> tuple[str, str]:
    path, audio = make_set(tmp_path, [], text=text, wavs={})
    return path, error_of(read_manifest, path, audio, CLASSES, **kwargs)


def test_unknown_label_names_file_line_value_and_close_matches(tmp_path):
    path, msg = bad_csv(tmp_path, 'fname,labels\na.wav,Bark\nb.wav,"Slam,Walk_and_footstep"\n')
    assert msg.startswith(f"{path} line 3 (b.wav): unknown label 'Walk_and_footstep'")
    assert "did you mean 'Walk_and_footsteps'" in msg


def test_unknown_label_case_mismatch_is_suggested(tmp_path):
    _, msg = bad_csv(tmp_path, "fname,labels\na.wav,hiss\n")
    assert "unknown label 'hiss'" in msg and "'Hiss'" in msg


def test_duplicate_fname_names_both_lines(tmp_path):
    text = "fname,labels\na.wav,Bark\nb.wav,Slam\na.wav,Hiss\n"
    path, msg = bad_csv(tmp_path, text)
    assert msg.startswith(f"{path} line 4 (a.wav): duplicate fname 'a.wav'")
    assert "lines 2 and 4" in msg


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a.wav,", "empty label list ''"),
        ('a.wav,""', "empty label list ''"),
        ('a.wav,"Bark,"', "empty label in 'Bark,' (stray comma)"),
        ('a.wav,"Bark, Hiss"', "label ' Hiss' has stray spaces"),
        ("a.wav,Hiss ", "label 'Hiss ' has stray spaces"),
        ('a.wav,"Bark,Bark"', "label 'Bark' is listed twice"),
    ],
)
def test_bad_label_cells(tmp_path, row, expected):
    path, msg = bad_csv(tmp_path, f"fname,labels\nz.wav,Bark\n{row}\n")
    assert msg.startswith(f"{path} line 3 (a.wav): ")
    assert expected in msg


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (",Bark", "line 3: empty fname"),
        (" a.wav,Bark", "fname ' a.wav' has stray spaces"),
        ("sub/a.wav,Bark", "must be a file name, not a path"),
        ("a.wav,Bark,Slam", "expected 2 columns as in the header, found 3"),
        ("a.wav", "expected 2 columns as in the header, found 1"),
    ],
)
def test_bad_rows(tmp_path, row, expected):
    path, msg = bad_csv(tmp_path, f"fname,labels\nz.wav,Bark\n{row}\n")
    assert msg.startswith(f"{path} line 3")
    assert expected in msg


def test_repeated_header_line(tmp_path):
    path, msg = bad_csv(tmp_path, "fname,labels\na.wav,Bark\nfname,labels\nb.wav,Hiss\n")
    assert msg.startswith(f"{path} line 3: the header line is repeated")


def test_unquoted_multi_label_hints_at_quoting(tmp_path):
    _, msg = bad_csv(tmp_path, "fname,labels\na.wav,Bark,Slam\n")
    assert 'must be double-quoted: "Bark,Slam"' in msg


def test_malformed_csv_unterminated_quote(tmp_path):
    path, msg = bad_csv(tmp_path, 'fname,labels\na.wav,Bark\nb.wav,"Slam\nc.wav,Hiss\n')
    assert msg.startswith(f"{path} line 3: malformed CSV")
    assert "unterminated" in msg


def test_malformed_csv_stray_quote(tmp_path):
    path, msg = bad_csv(tmp_path, 'fname,labels\na.wav,"Bark"x\n')
    assert msg.startswith(f"{path} line 2: malformed CSV")


def test_missing_header(tmp_path):
    path, msg = bad_csv(tmp_path, "a.wav,Bark\nb.wav,Slam\n")
    assert msg.startswith(f"{path} line 1: missing header")
    assert "'fname,labels'" in msg


def test_header_lacks_labels_column(tmp_path):
    path, msg = bad_csv(tmp_path, "fname,label\na.wav,Bark\n")
    assert msg.startswith(f"{path} line 1: header lacks column(s) 'labels'")


def test_header_with_stray_spaces(tmp_path):
    _, msg = bad_csv(tmp_path, "fname, labels\na.wav,Bark\n")
    assert "column ' labels' has stray spaces" in msg


def test_empty_csv(tmp_path):
    path, msg = bad_csv(tmp_path, "")
    assert msg == f"{path}: empty file, expected a header line"


def test_not_utf8(tmp_path):
    path, audio = make_set(tmp_path, [], text="", wavs={})
    with open(path, "wb") as f:
        f.write(b"fname,labels\na.wav,Bark\nb.wav,Caf\xe9\n")
    msg = error_of(read_manifest, path, audio, CLASSES)
    assert msg.startswith(f"{path} line 3: not UTF-8 text")


def test_missing_csv(tmp_path):
    path = str(tmp_path / "train_curated.csv")
    assert error_of(read_manifest, path, tmp_path, CLASSES) == f"{path}: file not found"


def test_error_counts_further_problems(tmp_path):
    _, msg = bad_csv(tmp_path, "fname,labels\na.wav,Barx\nb.wav,\nc.wav,Slam\nd.wav,Hisss\n")
    assert "line 2 (a.wav)" in msg
    assert "(2 more problem(s); skip_bad=True or --skip-bad leaves bad rows out)" in msg


# ----------------------------------------------------------------------------- audio errors


def test_missing_audio_file_names_file_and_row(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    os.remove(os.path.join(audio, "c.wav"))
    msg = error_of(read_manifest, path, audio, CLASSES, cls=AudioFormatError)
    assert msg.startswith(f"{path} line 4: audio file {os.path.join(audio, 'c.wav')} not found")


def test_missing_audio_file_is_found_without_audio_check(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    os.remove(os.path.join(audio, "c.wav"))
    with pytest.raises(AudioFormatError, match="line 4"):
        read_manifest(path, audio, CLASSES, check_audio=False)


def test_bad_audio_names_csv_row_and_wav(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    wav = os.path.join(audio, "b.wav")
    write_wav(wav)
    with open(wav, "r+b") as f:
        f.truncate(60)
    msg = error_of(read_manifest, path, audio, CLASSES, cls=AudioFormatError)
    assert msg.startswith(f"{path} line 3: {wav}: ")
    assert "data chunk truncated" in msg


def test_stereo_and_other_rates_are_converted_not_refused(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    write_wav(os.path.join(audio, "b.wav"), seconds=0.5, channels=2)
    m = read_manifest(path, audio, CLASSES, sample_rate=22050)
    assert m.conversions[1] == ("stereo -> mono", "44100 Hz -> 22050 Hz")
    assert m.conversions[0] == ("44100 Hz -> 22050 Hz",)
    assert m.durations[1] == pytest.approx(0.5)
    assert read_manifest(path, audio, CLASSES).conversions[0] == ()
    assert m.subset([1]).conversions == (m.conversions[1],)


def test_missing_audio_folder(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    msg = error_of(read_manifest, path, tmp_path / "elsewhere", CLASSES)
    assert "elsewhere: audio folder not found" in msg and path in msg


def test_unlisted_wavs_give_one_warning_with_count(tmp_path):
    path, audio = make_set(tmp_path, ROWS)
    for name in ("x1.wav", "x2.wav", "x3.wav", "x4.wav"):
        write_wav(os.path.join(audio, name))
    with open(os.path.join(audio, "notes.txt"), "w") as f:
        f.write("not audio")
    with pytest.warns(DataWarning) as record:
        m = read_manifest(path, audio, CLASSES)
    assert len(record) == 1
    msg = str(record[0].message)
    assert f"{audio}: 4 audio file(s) not listed in {path}" in msg
    assert "x1.wav, x2.wav, x3.wav, ..." in msg
    assert len(m) == 4


def test_skip_bad_leaves_bad_rows_out_with_one_warning(tmp_path):
    rows = [*ROWS, ("e.wav", "Barx"), ("f.wav", ""), ("g.wav", "Hiss"), ("h.wav", "Slam")]
    path, audio = make_set(tmp_path, rows)
    os.remove(os.path.join(audio, "g.wav"))
    (tmp_path / "train_curated" / "h.wav").write_bytes(b"RIFF")
    with pytest.warns(DataWarning) as record:
        m = read_manifest(path, audio, CLASSES, skip_bad=True)
    assert m.fnames == ("a.wav", "b.wav", "c.wav", "d.wav")
    assert m.labels.shape == (4, 5) and m.durations.shape == (4,)
    (msg,) = [str(r.message) for r in record]
    assert msg.startswith(f"{path}: skipped 4 of 8 row(s) with problems: ")
    assert f"{path} line 6 (e.wav): unknown label 'Barx'" in msg
    assert f"{path} line 7 (f.wav): empty label list" in msg
    assert "g.wav not found" in msg
    assert "and 1 more" in msg


def test_skip_bad_drops_every_row_of_a_duplicate(tmp_path):
    text = "fname,labels\na.wav,Bark\nb.wav,Slam\na.wav,Hiss\n"
    path, audio = make_set(tmp_path, [], text=text, wavs={"a.wav": 0.1, "b.wav": 0.1})
    with pytest.warns(DataWarning, match="skipped 2 of 3 row"):
        m = read_manifest(path, audio, CLASSES, skip_bad=True)
    assert m.fnames == ("b.wav",)


def test_skip_bad_without_problems_is_silent(tmp_path, recwarn):
    m = read_manifest(*make_set(tmp_path, ROWS), CLASSES, skip_bad=True)
    assert len(m) == 4 and not [w for w in recwarn if w.category is DataWarning]


# ----------------------------------------------------------------------------- labels & classes


def test_parse_labels_is_a_set():
    assert parse_labels("Slam,Bark", CLASSES) == frozenset({"Bark", "Slam"})
    with pytest.raises(DataError, match="unknown label 'Hi_hat'.*'Hi-hat'"):
        parse_labels("Hi_hat", CLASSES)


def write_submission(tmp_path, header: str) -> str:
    path = str(tmp_path / "sample_submission.csv")
    with open(path, "w") as f:
        f.write(header + "\nt1.wav" + ",0" * (header.count(",")) + "\n")
    return path


def test_read_class_names(tmp_path):
    assert read_class_names(write_submission(tmp_path, "fname," + ",".join(CLASSES))) == CLASSES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("id,Bark,Slam", "the first column must be 'fname', found 'id'"),
        ("fname", "no class columns"),
        ("fname,Bark,Slam,Bark", "class 'Bark' appears twice (columns 2 and 4)"),
        ("fname,Bark,Slam,Hiss", "not in alphabetical (Python sorted) order: 'Slam' (column 3)"),
        ("fname,Hiss,Hi-hat", "'Hiss' (column 2) comes before 'Hi-hat' (column 3)"),
        ("fname,Bark, Slam", "class name ' Slam' (column 3) is empty or has stray spaces"),
    ],
)
def test_read_class_names_errors(tmp_path, header, expected):
    path = write_submission(tmp_path, header)
    msg = error_of(read_class_names, path)
    assert msg.startswith(f"{path} line 1: ")
    assert expected in msg


# ----------------------------------------------------------------------------- test set


def test_test_manifest_without_labels(tmp_path):
    root = make_dataset(tmp_path, test_labels=False)
    m = read_test_manifest(os.path.join(root, "sample_submission.csv"), os.path.join(root, "test"))
    assert m.fnames == ("t1.wav", "t2.wav") and m.labels is None
    assert m.class_names == CLASSES
    with pytest.raises(DataError, match="no labels"):
        m.label_sets()


def test_test_manifest_with_labels_from_post_competition_csv(tmp_path):
    root = make_dataset(tmp_path)
    m = read_test_manifest(
        os.path.join(root, "sample_submission.csv"),
        os.path.join(root, "test"),
        CLASSES,
        labels_csv=os.path.join(root, "test_post_competition.csv"),
    )
    assert m.fnames == ("t1.wav", "t2.wav")
    assert m.label_sets() == [{"Hiss"}, {"Bark", "Slam"}]


def test_test_clip_missing_from_folder_or_labels(tmp_path):
    root = make_dataset(tmp_path)
    sub = os.path.join(root, "sample_submission.csv")
    labels = os.path.join(root, "test_post_competition.csv")
    os.remove(os.path.join(root, "test", "t2.wav"))
    msg = error_of(read_test_manifest, sub, os.path.join(root, "test"), cls=AudioFormatError)
    assert msg.startswith(f"{sub} line 3: audio file") and "t2.wav not found" in msg
    with open(labels, "w") as f:
        f.write("fname,labels,usage\nt2.wav,Slam,Private\n")
    msg = error_of(read_test_manifest, sub, os.path.join(root, "test"), labels_csv=labels)
    assert msg.startswith(f"{sub} line 2 (t1.wav): test clip has no row in {labels}")


def test_test_class_names_must_match_submission(tmp_path):
    root = make_dataset(tmp_path)
    sub = os.path.join(root, "sample_submission.csv")
    msg = error_of(read_test_manifest, sub, os.path.join(root, "test"), CLASSES[:3])
    assert msg.startswith(f"{sub} line 1: its class columns differ")


# ----------------------------------------------------------------------------- whole folder


def test_load_dataset(tmp_path):
    ds = load_dataset(make_dataset(tmp_path))
    assert ds.class_names == CLASSES
    assert len(ds.curated) == 4 and len(ds.noisy) == 2 and len(ds.test) == 2
    assert ds.noisy.label_sets() == [{"Hiss"}, {"Bark", "Slam"}]
    assert ds.test.labels is not None
    assert list(ds.sets()) == ["curated", "noisy", "test"]
    assert ds.root == str(tmp_path)


def test_load_dataset_without_optional_parts(tmp_path):
    ds = load_dataset(make_dataset(tmp_path, noisy=False, test_labels=False))
    assert ds.noisy is None and ds.test.labels is None
    assert list(ds.sets()) == ["curated", "test"]


def test_load_dataset_missing_folder(tmp_path):
    msg = error_of(load_dataset, tmp_path / "nope")
    assert f"{tmp_path / 'nope'}: dataset folder not found" in msg
    assert "train_curated.csv" in msg and "sample_submission.csv" in msg


def test_load_dataset_lists_missing_files(tmp_path):
    root = make_dataset(tmp_path)
    os.remove(os.path.join(root, "sample_submission.csv"))
    os.rename(os.path.join(root, "train_noisy"), os.path.join(root, "noisy_audio"))
    msg = error_of(load_dataset, root)
    assert "not a FAT2019 dataset folder, missing sample_submission.csv, train_noisy/" in msg
    assert "A FAT2019 dataset folder (Kaggle layout) holds:" in msg


def test_layout_paths(tmp_path):
    layout = DatasetLayout(str(tmp_path))
    assert layout.curated_csv == os.path.join(tmp_path, "train_curated.csv")
    assert layout.test_labels_csv.endswith("test_post_competition.csv")
    assert not layout.has_noisy


def test_demo_dataset_loads(request):
    try:
        root = request.getfixturevalue("tiny_demo_dir")
    except pytest.FixtureLookupError:
        pytest.skip("tiny_demo_dir fixture not available")
    ds = load_dataset(root)
    assert len(ds.curated) > 0 and ds.curated.labels.sum(axis=1).min() >= 1
    assert ds.noisy is not None and ds.test.labels is not None

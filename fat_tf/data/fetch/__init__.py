"""Fetch FSDKaggle2019 from Zenodo, or unpack the Kaggle zip, into the Kaggle FAT2019 layout.

The command is :mod:`fat_tf.data.fetch.download` (``fat-tf data download``, ``python -m
fat_tf.data download``); the library API is importable from here::

    from fat_tf.data.fetch import prepare_from_zenodo, plan_zenodo_download
    prepare_from_zenodo("data/fat2019", subsets=("curated", "test"))

Modules: :mod:`~fat_tf.data.fetch.record` (what to fetch), :mod:`~fat_tf.data.fetch.zenodo`
and :mod:`~fat_tf.data.fetch.kaggle_zip` (laying out each source),
:mod:`~fat_tf.data.fetch.label_csvs` (the CSVs written), :mod:`~fat_tf.data.fetch.plan`
(``--dry-run``), :mod:`~fat_tf.data.fetch.transfer` (HTTP), :mod:`~fat_tf.data.fetch.archives`
and :mod:`~fat_tf.data.fetch.extract` (zips), :mod:`~fat_tf.data.fetch.progress`.

The result is what :func:`fat_tf.data.load_dataset` and ``python -m fat_tf.data check``
accept::

    DIR/train_curated.csv  DIR/train_curated/   FSDKaggle2019.audio_train_curated.zip
    DIR/train_noisy.csv    DIR/train_noisy/     FSDKaggle2019.audio_train_noisy.z01 ... .zip
    DIR/sample_submission.csv  DIR/test/        FSDKaggle2019.audio_test.zip
    DIR/test_post_competition.csv               test labels (Zenodo only), copied as is
    DIR/train_curated_excluded/                 WAVs of curated clips left out by --fix-labels
    DIR/downloads/                              the verified Zenodo archives (--archive-dir)

How it works:
    - :data:`~fat_tf.data.fetch.record.FSDKAGGLE2019` is the one table of the record id and
      the file names of each subset. Sizes, MD5 checksums and download URLs are read at run
      time from the record API JSON (``https://zenodo.org/api/records/3612637``;
      ``--record-url`` points elsewhere, e.g. at a test server). Only the standard library
      is used.
    - Downloads (:mod:`~fat_tf.data.fetch.transfer`) go to ``NAME.part`` and resume with an
      HTTP ``Range`` request; every file's size and MD5 are checked before it is renamed
      into place; a corrupt file is removed and the error names it with both checksums.
      Transient errors are retried with exponential backoff.
    - Archives (:mod:`~fat_tf.data.fetch.archives`): the noisy set is a *split* zip
      (``.z01`` ... ``.z06`` plus ``.zip``) whose members are extracted straight from the
      parts, CRC-checked, without writing a joined 20+ GB copy first. Extraction
      (:mod:`~fat_tf.data.fetch.extract`) checks every member name before writing anything,
      writes into ``DIR/.FOLDER.partial`` and renames that to ``DIR/FOLDER`` only when
      complete. A single top-level folder in an archive (``FSDKaggle2019.audio_test/``) is
      stripped.
    - Idempotent: verified archives are remembered in ``downloads/verified.json`` (name,
      size, mtime, MD5) and not hashed again; an existing target folder is skipped (delete
      it to extract again); CSVs are regenerated from the metadata on every run and only
      rewritten when their content changes, so re-running with another ``--fix-labels`` just
      updates them. The record API is only contacted when a file must be fetched.
    - ``--dry-run`` (:mod:`~fat_tf.data.fetch.plan`) lists the files a run would need, with
      size, MD5 and whether they are already there, and the total to download; it reads only
      the record JSON and writes nothing. Progress lines
      (:mod:`~fat_tf.data.fetch.progress`) show the speed and the time left.
Decisions:
    - ``train_curated.csv`` / ``train_noisy.csv`` are ``fname,labels`` from the
      ``*_post_competition.csv`` files, sorted by fname, LF line endings and minimal
      quoting: with ``--fix-labels keep`` this is Kaggle's file byte for byte.
    - ``sample_submission.csv`` has the header ``fname`` + the 80 ``vocabulary.csv`` labels
      in file order and all-zero rows, sorted by fname. ``--test-clips all`` (the default)
      lists all 4481 test clips: Zenodo's test zip holds all of them, all are labelled in
      ``test_post_competition.csv``, the DCASE paper and baseline report on the full set,
      and every WAV in ``test/`` is then listed (no "unlisted files" warnings).
      ``--test-clips private`` lists the 3361 ``usage == "Private"`` clips only, which is
      Kaggle's current file byte for byte (the loader then warns that the 1120 public WAVs
      in ``test/`` are ignored).
    - ``--fix-labels`` handles the six officially mislabelled / corrupted curated clips
      (:data:`~fat_tf.data.fetch.record.MISLABELLED_CURATED`): ``drop`` (default) leaves the
      six rows out, ``relabel`` applies the 1st-place solution's relabels (3 clips) and
      drops the other 3, ``keep`` changes nothing. WAVs of dropped clips are moved to
      ``train_curated_excluded/`` (and moved back by a later ``keep``/``relabel`` run), so
      the loader does not warn about unlisted files.
    - ``--kaggle-zip`` (:mod:`~fat_tf.data.fetch.kaggle_zip`) lays out the Kaggle
      competition zip the same way: its inner ``train_curated.zip``, ``train_noisy.zip`` and
      ``test.zip`` (or ``train_curated/``... folders) are extracted, ``train_noisy.csv`` and
      ``sample_submission.csv`` copied as is, ``train_curated.csv`` copied or, with
      ``drop``/``relabel``, rewritten. It has no test labels. A stored (uncompressed) inner
      zip is read in place; a compressed one is unpacked to a temporary file in the archive
      folder first.
"""

from fat_tf.data.fetch.archives import (
    ArchiveError,
    ArchiveMember,
    ConcatFile,
    SplitZipArchive,
    ZipArchive,
    open_archive,
    open_inner_zip,
)
from fat_tf.data.fetch.extract import check_member_name, extract_archive, plan_extraction
from fat_tf.data.fetch.kaggle_zip import prepare_from_kaggle_zip
from fat_tf.data.fetch.label_csvs import (
    apply_label_fixes,
    kaggle_labels_csv,
    read_labelled_rows,
    read_vocabulary,
    sample_submission_csv,
)
from fat_tf.data.fetch.plan import (
    PlannedFile,
    dry_run_text,
    plan_kaggle_zip,
    plan_zenodo_download,
)
from fat_tf.data.fetch.progress import Progress
from fat_tf.data.fetch.record import (
    CURATED_META_CSV,
    DEFAULT_SUBSETS,
    EXCLUDED_FOLDER,
    FIX_LABELS_MODES,
    FSDKAGGLE2019,
    MISLABELLED_CURATED,
    NOISY_META_CSV,
    RECORD_API_URL,
    TEST_CLIPS_MODES,
    TEST_META_CSV,
    VOCABULARY_CSV,
    SubsetSpec,
    ZenodoRecord,
)
from fat_tf.data.fetch.transfer import (
    ChecksumError,
    DownloadError,
    DownloadOptions,
    RemoteFile,
    check_free_space,
    download_file,
    fetch_record,
    file_md5,
    parse_record,
    verify_file,
)
from fat_tf.data.fetch.zenodo import ZenodoFiles, prepare_from_zenodo

__all__ = [
    "CURATED_META_CSV",
    "DEFAULT_SUBSETS",
    "EXCLUDED_FOLDER",
    "FIX_LABELS_MODES",
    "FSDKAGGLE2019",
    "MISLABELLED_CURATED",
    "NOISY_META_CSV",
    "RECORD_API_URL",
    "TEST_CLIPS_MODES",
    "TEST_META_CSV",
    "VOCABULARY_CSV",
    "ArchiveError",
    "ArchiveMember",
    "ChecksumError",
    "ConcatFile",
    "DownloadError",
    "DownloadOptions",
    "PlannedFile",
    "Progress",
    "RemoteFile",
    "SplitZipArchive",
    "SubsetSpec",
    "ZenodoFiles",
    "ZenodoRecord",
    "ZipArchive",
    "apply_label_fixes",
    "check_free_space",
    "check_member_name",
    "download_file",
    "dry_run_text",
    "extract_archive",
    "fetch_record",
    "file_md5",
    "kaggle_labels_csv",
    "open_archive",
    "open_inner_zip",
    "parse_record",
    "plan_extraction",
    "plan_kaggle_zip",
    "plan_zenodo_download",
    "prepare_from_kaggle_zip",
    "prepare_from_zenodo",
    "read_labelled_rows",
    "read_vocabulary",
    "sample_submission_csv",
    "verify_file",
]

"""The FSDKaggle2019 record: its Zenodo id, the archives of each subset, the CSV names.

:data:`FSDKAGGLE2019` is the one table of what to fetch; sizes, checksums and links are
read at run time from the record API JSON (:func:`fat_tf.data.fetch.transfer.fetch_record`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SubsetSpec:
    """Where one subset comes from and where it goes.

    Args:
        archives: Zenodo file names, in part order (several for a split zip).
        folder: the folder in the dataset directory.
        kaggle_archives: inner zip names accepted in the Kaggle competition zip.
    """

    archives: tuple[str, ...]
    folder: str
    kaggle_archives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZenodoRecord:
    """A Zenodo record and the files of each subset.

    Args:
        record_id: the Zenodo record id.
        meta: the metadata zip (always downloaded).
        subsets: subset name to :class:`SubsetSpec`.
    """

    record_id: int
    meta: str
    subsets: Mapping[str, SubsetSpec]

    @property
    def api_url(self) -> str:
        """The record API URL whose JSON lists each file's size, checksum and link."""
        return f"https://zenodo.org/api/records/{self.record_id}"


_NOISY = "FSDKaggle2019.audio_train_noisy"

#: The one table of what to fetch: record id and file names per subset.
FSDKAGGLE2019 = ZenodoRecord(
    record_id=3612637,
    meta="FSDKaggle2019.meta.zip",
    subsets={
        "curated": SubsetSpec(
            ("FSDKaggle2019.audio_train_curated.zip",),
            "train_curated",
            ("train_curated.zip", "audio_curated.zip"),
        ),
        "test": SubsetSpec(("FSDKaggle2019.audio_test.zip",), "test", ("test.zip",)),
        "noisy": SubsetSpec(
            tuple(f"{_NOISY}.z{i:02d}" for i in range(1, 7)) + (f"{_NOISY}.zip",),
            "train_noisy",
            ("train_noisy.zip", "audio_noisy.zip"),
        ),
        "doc": SubsetSpec(("FSDKaggle2019.doc.zip",), "doc"),
    },
)
RECORD_API_URL = FSDKAGGLE2019.api_url
DEFAULT_SUBSETS = ("curated", "noisy", "test")
FIX_LABELS_MODES = ("drop", "relabel", "keep")
TEST_CLIPS_MODES = ("all", "private")

CURATED_META_CSV = "train_curated_post_competition.csv"
NOISY_META_CSV = "train_noisy_post_competition.csv"
TEST_META_CSV = "test_post_competition.csv"
VOCABULARY_CSV = "vocabulary.csv"
EXCLUDED_FOLDER = "train_curated_excluded"

#: The officially mislabelled or corrupted curated clips (Zenodo README, Kaggle data page),
#: with the 1st-place solution's relabel (``None``: it removes the clip).
MISLABELLED_CURATED: dict[str, str | None] = {
    "f76181c4.wav": "Bass_drum",
    "77b925c2.wav": None,
    "6a1f682a.wav": None,
    "c7db12aa.wav": "Marimba_and_xylophone",
    "7752cc8a.wav": "Dishes_and_pots_and_pans,Chink_and_clink",
    "1d44b0bd.wav": None,  # contains no signal
}


def selected_subsets(subsets: Sequence[str], record: ZenodoRecord) -> list[str]:
    """The names in ``subsets`` in the record's table order.

    Args:
        subsets: subset names (``curated``, ``noisy``, ``test``, ``doc``).
        record: the file table.

    Raises:
        ValueError: a name the record does not have.
    """
    unknown = [s for s in subsets if s not in record.subsets]
    if unknown:
        raise ValueError(f"unknown subset(s) {unknown}; choose from {list(record.subsets)}")
    return [s for s in record.subsets if s in subsets]  # table order

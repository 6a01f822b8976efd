"""CAD-SD as a Hugging Face ``DatasetDict`` (train, test): build, save, load, fingerprint.

Images are stored as the original files' bytes (a JPEG stays the same JPEG, byte for byte; never
re-encoded) with explicit :func:`features`, and decode in their stored pixel order (an EXIF
orientation tag is not applied: :mod:`cadsd.format.hf_image`), as the official loaders read them. Rows follow :func:`cadsd.format.layout.index` order.
:func:`fingerprint` identifies the data itself, so a folder, its saved dataset and its Hub copy
all give the same value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.errors import CadsdError, DownloadError, LayoutError
from cadsd.files import Output, check_output, output_folder
from cadsd.format.layout import CATEGORY_NAMES, GROUP_NAMES, LABEL_NAMES, SPLITS, index

if TYPE_CHECKING:
    import datasets

HF_PREFIX = "hf:"
#: Written by `cadsd build` into its output (the files it wrote): what `--force` replaces.
BUILD_MARKER = "cadsd-build.json"
_CLASS_COLUMNS = {"label": LABEL_NAMES, "category": CATEGORY_NAMES, "group": GROUP_NAMES}


def features(with_mask: bool) -> datasets.Features:
    """The dataset's columns (DESIGN.md "Contracts"): image, label, category, group, file_name
    and, for sets with ground truth (synthetic), mask. ``mask`` is None for images without one.
    """
    from datasets import ClassLabel, Features, Value

    from cadsd.format.hf_image import StoredImage as Image  # stored pixel order, no EXIF turn

    cols = {
        "image": Image(),
        **{name: ClassLabel(names=list(names)) for name, names in _CLASS_COLUMNS.items()},
        "file_name": Value("string"),
    }
    if with_mask:
        cols["mask"] = Image()
    return Features(cols)


def build(root: str | Path) -> datasets.DatasetDict:
    """Build the DatasetDict (train, test) in memory from a folder in the official layout.

    A split with no images is an empty dataset with the same features. ``mask`` is present when
    any image has a ground-truth mask.
    """
    from datasets import DatasetDict

    samples = index(root)
    with_mask = any(s.mask is not None for s in samples)
    feats = features(with_mask)
    mask_of = (lambda s: {"bytes": s.mask.read_bytes(), "path": None} if s.mask else None)
    return DatasetDict({split: split_dataset([s for s in samples if s.split == split], feats,
                                             mask_of if with_mask else None)
                        for split in SPLITS})


def split_dataset(rows: list, feats: datasets.Features, mask_of: object = None) -> datasets.Dataset:
    """One split's rows (samples with ``path``, ``label``, ``category``, ``group`` and
    ``file_name``) as a Dataset with ``feats``; ``mask_of(sample)`` gives the mask cell."""
    from datasets import Dataset

    data = {
        # path None: the bytes are the data; a path would make `datasets` drop them.
        "image": [{"bytes": s.path.read_bytes(), "path": None} for s in rows],
        "label": [s.label for s in rows],
        "category": [s.category for s in rows],
        "group": [s.group for s in rows],
        "file_name": [s.file_name for s in rows],
    }
    if mask_of is not None:
        data["mask"] = [mask_of(s) for s in rows]
    # Features.encode_example turns the ClassLabel names into their indices.
    return Dataset.from_dict(data, features=feats)


def _is_saved(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def build_output(out: str | Path, *, overwrite: bool = False,
                 sources: tuple[str | Path, ...] = ()) -> Output:
    """The folder ``cadsd build`` writes (:class:`cadsd.files.Output`): ``--force`` replaces
    only a folder holding :data:`BUILD_MARKER`, never ``sources`` or a folder around them."""
    return Output.of(out, BUILD_MARKER, "`cadsd build`", force=overwrite, sources=sources)


def save(dd: datasets.DatasetDict, out: str | Path, *, overwrite: bool = False,
         sources: tuple[str | Path, ...] = ()) -> Path:
    """``save_to_disk`` into a staging folder beside ``out``, then rename it into place.

    Refuses a non-empty ``out`` unless ``overwrite``, and even then one that ``cadsd build``
    did not write (:func:`build_output`); a failure leaves ``out`` untouched.
    """
    target = build_output(out, overwrite=overwrite, sources=sources)
    with output_folder(target) as staging:
        dd.save_to_disk(str(staging))
    return target.path


def build_to_disk(
    root: str | Path, out: str | Path, *, overwrite: bool = False
) -> datasets.DatasetDict:
    """:func:`build` then :func:`save`; checks ``out`` before the work. Returns the DatasetDict."""
    check_output(build_output(out, overwrite=overwrite, sources=(root,)))
    dd = build(root)
    save(dd, out, overwrite=overwrite, sources=(root,))
    return dd


def _check_classes(dd: datasets.DatasetDict, source: str) -> None:
    """Refuse a copy whose ClassLabel names differ: a cast would silently relabel the rows."""
    from datasets import ClassLabel

    for split, ds in dd.items():
        for name, names in _CLASS_COLUMNS.items():
            feat = ds.features.get(name)
            if isinstance(feat, ClassLabel) and tuple(feat.names) != names:
                raise CadsdError(
                    f"{source} [{split}]: column {name!r} has classes {feat.names}, expected "
                    f"{list(names)}; it is not a CAD-SD dataset of this toolkit"
                )


def _load_hub(source: str) -> datasets.DatasetDict:
    import datasets

    from cadsd.publishing.repo_id import repo_id_problem

    repo, _, revision = source[len(HF_PREFIX) :].partition("@")
    problem = repo_id_problem(repo)
    if problem is not None:
        raise CadsdError(f"{source!r}: {problem}; write hf:ORG/NAME (optionally "
                         "hf:ORG/NAME@REVISION)")
    try:
        dd = datasets.load_dataset(repo, revision=revision or None)
    except Exception as err:  # network, auth and not-found errors all end here
        raise DownloadError(
            f"could not load {repo} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            "Check the name, your network and HF_TOKEN, or load a local copy (a folder)."
        ) from err
    if not isinstance(dd, datasets.DatasetDict) or not set(SPLITS) <= set(dd):
        raise CadsdError(f"{source}: expected the splits {list(SPLITS)}, got {list(dd)}")
    _check_classes(dd, source)
    want = features("mask" in dd["train"].column_names)
    from cadsd.format.hf_image import stored_orientation

    return stored_orientation(datasets.DatasetDict({s: ds.cast(want) for s, ds in dd.items()}))


def load(source: str | Path) -> datasets.DatasetDict:
    """CAD-SD as a DatasetDict from a dataset folder (built in memory), a folder written by
    :func:`save` / ``save_to_disk``, or ``"hf:ORG/NAME[@REVISION]"`` (cast to :func:`features`).
    """
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        return _load_hub(source)
    path = Path(source).expanduser()
    if path.is_dir() and _is_saved(path):
        import datasets

        dd = datasets.load_from_disk(str(path))
        if not isinstance(dd, datasets.DatasetDict):
            raise CadsdError(f"{path} holds a single split; expected a DatasetDict (train, test)")
        _check_classes(dd, str(path))
        from cadsd.format.hf_image import stored_orientation

        return stored_orientation(dd)
    if not path.exists():
        raise LayoutError(
            f"dataset not found: {path}. Pass a dataset folder (train/, test/), a folder written "
            "by `cadsd build`, or hf:ORG/NAME."
        )
    try:
        return build(path)
    except LayoutError as err:
        raise LayoutError(
            f"cannot load {path}: it is neither a dataset folder (train/, test/) nor a dataset "
            f"saved by `cadsd build` (no dataset_dict.json). {err}"
        ) from err


def _digest_lines(entries: list[tuple[str, str, str]]) -> str:
    h = hashlib.sha256()
    for split, file_name, digest in sorted(entries):
        h.update(f"{split}\t{file_name}\t{digest}\n".encode())
    return h.hexdigest()


def fingerprint(dd_or_root: datasets.DatasetDict | str | Path) -> str:
    """sha256 over the sorted lines ``split<TAB>file_name<TAB>sha256(image bytes)``.

    Only the image data and where it sits count (not the storage format, not the column
    order), so a folder, the dataset :func:`save` wrote from it and its Hub copy agree.
    Accepts a DatasetDict or anything :func:`load` accepts (folders are hashed from the files).
    """
    if isinstance(dd_or_root, (str, Path)):
        source = dd_or_root
        if not (isinstance(source, str) and source.startswith(HF_PREFIX)):
            path = Path(source).expanduser()
            if not _is_saved(path):
                lines = [
                    (s.split, s.file_name, hashlib.sha256(s.path.read_bytes()).hexdigest())
                    for s in index(path)
                ]
                return _digest_lines(lines)
        dd_or_root = load(source)
    lines = []
    for split, ds in dd_or_root.items():
        table = ds.select_columns(["image", "file_name"]).with_format("arrow")
        for batch in table.iter(batch_size=256):
            images = batch.column("image").to_pylist()
            for image, name in zip(images, batch.column("file_name").to_pylist()):
                data = image["bytes"] if image["bytes"] is not None else _read(image["path"])
                lines.append((split, name, hashlib.sha256(data).hexdigest()))
    return _digest_lines(lines)


def _read(path: str | None) -> bytes:
    if not path or not Path(path).is_file():
        raise CadsdError(f"an image row has no bytes and its file {path!r} is missing")
    return Path(path).read_bytes()

"""`cadsd push`: publish CAD-SD (or a synthetic stand-in) to the Hugging Face Hub with its card.

The data goes first, with ``DatasetDict.push_to_hub`` (image bytes embedded in Parquet); that
commit writes a README whose YAML holds ``dataset_info`` and ``configs``. The card is pushed
second and merged into that README, so those keys survive. ``--dry-run DIR`` writes the same
repo folder (``data/*.parquet`` + ``README.md``) locally and uploads nothing.

The token comes from ``--token``, ``HF_TOKEN`` or the stored login; it is passed to the client
libraries only and scrubbed from every message this module produces.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cadsd.errors import CadsdError
from cadsd.publishing.card import Provenance, card_for, detect_provenance, write_card
from cadsd.publishing.repo_id import describe

if TYPE_CHECKING:
    import datasets
    from huggingface_hub import DatasetCard

DATA_DIR = "data"  # where push_to_hub puts the shards of the default config
MAX_SHARD_BYTES = 500 * 1000 * 1000  # datasets' default max_shard_size ("500MB")
_DATA_KEYS = ("dataset_info", "configs")


@dataclass
class PushResult:
    """What was (or would be) published: the repo, its files and the card."""

    repo_id: str
    files: list[str]
    card: DatasetCard
    url: str | None = None
    dry_run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a non-commercial licence


def resolve_token(token: str | None) -> str | None:
    """``token``, else ``HF_TOKEN``, else the stored ``hf auth login`` token (None if none)."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def client_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub / datasets raise for HTTP, auth, network and metadata problems:
    HfHubHTTPError and requests' errors are OSErrors; bad ids and YAML are ValueErrors; raw
    transport errors are httpx(2) HTTPErrors (which of the two depends on the hub version)."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(name).HTTPError)
    return tuple(errors)


def describe_error(err: BaseException) -> str:
    """One line: the error's type and first line, plus the Hub's own message when it sent one."""
    first = (str(err).splitlines() or [""])[0]
    server = getattr(err, "server_message", None)
    return f"{type(err).__name__}: {first}" + (f"; the Hub says: {server}" if server else "")


def scrub(text: str, token: str | None) -> str:
    """``text`` with ``token`` replaced by ``***`` (every message that may quote a request)."""
    return text.replace(token, "***") if token else text


def load_source(
    source: str, *, seed: int = 0, counts: str = "paper", size: int = 256
) -> tuple[datasets.DatasetDict, Provenance]:
    """The DatasetDict to publish and its provenance, from ``synthetic`` or a PATH."""
    from cadsd.format import hf

    if source == "synthetic":
        from cadsd.synth import ensure_synthetic

        root = ensure_synthetic(seed=seed, counts=counts, size=size)
        return hf.build(root), Provenance("synthetic", seed, counts, size)
    path = Path(source).expanduser()
    if not path.exists():
        raise CadsdError(
            f"--source {source}: not found. Run `cadsd download` first, pass a dataset folder "
            "or a folder written by `cadsd build`, or use --source synthetic."
        )
    dd = hf.load(path)
    if (path / "dataset_dict.json").is_file():  # a saved DatasetDict: provenance from its columns
        kind = "synthetic" if "mask" in dd["train"].column_names else "cadsd"
        return dd, Provenance(kind)
    return dd, detect_provenance(path)


def _benchmark_source(source: str) -> tuple | None:
    """``NAME:CATEGORY`` (a downloaded benchmark) or ``PATH:CATEGORY`` (a folder in one of
    their layouts) -> (benchmark, root, category); None for a CAD-SD source."""
    from cadsd import zoo
    from cadsd.zoo.download import benchmark_dir, not_found_message

    head, sep, category = source.rpartition(":")
    if not sep or not head or "/" in category:
        return None
    if head in zoo.BENCHMARKS:
        bench = zoo.get(head)
        folder = benchmark_dir(bench)
        if not folder.is_dir():
            raise CadsdError(not_found_message(bench, folder))
        return bench, bench.find_root(folder), category
    found = zoo.detect(Path(head).expanduser())
    return (found[0], found[1], category) if found else None


def num_shards(dd: datasets.DatasetDict, max_shard_bytes: int = MAX_SHARD_BYTES) -> dict[str, int]:
    """Shards per split: enough to keep each under ``max_shard_bytes`` (Arrow size)."""
    return {s: max(1, math.ceil(ds.data.nbytes / max_shard_bytes)) for s, ds in dd.items()}


def merge_card(card: DatasetCard, pushed: DatasetCard) -> DatasetCard:
    """``card`` with the data keys (``dataset_info``, ``configs``, and any other key it does not
    set) of the README that the data push wrote."""
    from huggingface_hub import DatasetCard, DatasetCardData

    ours = card.data.to_dict()
    theirs = pushed.data.to_dict()
    meta = {k: v for k, v in ours.items() if k not in _DATA_KEYS}
    meta.update({k: v for k, v in theirs.items() if k in _DATA_KEYS or k not in meta})
    return DatasetCard(f"---\n{DatasetCardData(**meta).to_yaml()}\n---\n{card.text}")


def _estimate_nbytes(ds: datasets.Dataset) -> int:
    # What push_to_hub records as a split's num_bytes (embedded files included).
    try:
        return int(ds._estimate_nbytes())
    except AttributeError:  # a datasets version without it
        return int(ds.data.nbytes)


def write_repo_folder(
    dd: datasets.DatasetDict, card: DatasetCard, out: str | Path, shards: dict[str, int]
) -> list[str]:
    """Write the repo push_to_hub + the card would create: ``data/{split}-NNNNN-of-NNNNN.parquet``
    with embedded image bytes, and README.md with the card plus ``dataset_info``/``configs``.

    Written to a staging folder and renamed into ``out`` (which must be absent or empty).
    """
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.arrow_writer import (
        get_writer_batch_size_from_data_size,
        get_writer_batch_size_from_features,
    )
    from datasets.info import DatasetInfosDict
    from datasets.table import embed_table_storage
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from cadsd.files import new_folder

    with new_folder(out) as staging:
        files: list[str] = []
        info = DatasetInfo(features=None, splits=SplitDict(), download_size=0, dataset_size=0)
        for split, ds in dd.items():
            nbytes = _estimate_nbytes(ds)
            batch = get_writer_batch_size_from_features(ds.features) or (
                get_writer_batch_size_from_data_size(len(ds), nbytes)
            )
            n = shards[split]
            for i in range(n):
                shard = ds.shard(num_shards=n, index=i, contiguous=True).with_format("arrow")
                shard = shard.map(
                    embed_table_storage, batched=True, batch_size=batch, keep_in_memory=True
                ).with_format(**ds.format)
                rel = f"{DATA_DIR}/{split}-{i:05d}-of-{n:05d}.parquet"
                (staging / DATA_DIR).mkdir(exist_ok=True)
                shard.to_parquet(str(staging / rel), batch_size=batch)
                info.download_size += (staging / rel).stat().st_size
                files.append(rel)
            info.features = ds.features
            info.splits.add(SplitInfo(name=split, num_bytes=nbytes, num_examples=len(ds)))
            info.dataset_size += nbytes
        info.size_in_bytes = info.download_size + info.dataset_size
        info.config_name = "default"
        data = DatasetCardData()
        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
        configs = {"data_files": [{"split": s, "path": f"{DATA_DIR}/{s}-*"} for s in dd]}
        MetadataConfigs({"default": configs}).to_dataset_card_data(data)
        pushed = DatasetCard(f"---\n{data}\n---\n")
        write_card(merge_card(card, pushed), staging / "README.md")
        files.append("README.md")
    return files


def push(
    repo_id: str,
    *,
    source: str | None = None,
    private: bool = False,
    token: str | None = None,
    dry_run: str | Path | None = None,
    license: str | None = None,
    seed: int = 0,
    counts: str = "paper",
    size: int = 256,
) -> PushResult:
    """Publish the dataset (``source``: ``synthetic``, a folder or a saved dataset; default the
    downloaded CAD-SD) to ``repo_id``, data first, then the card merged into its README."""
    problem = describe(repo_id)
    if problem is not None:  # before any data is built or written
        raise CadsdError(problem)
    if source is None:
        from cadsd.format.cache import real_dataset_dir

        source = str(real_dataset_dir())
    warnings: list[str] = []
    benchmark = _benchmark_source(source)
    if benchmark is not None:
        from cadsd import zoo
        from cadsd.zoo.card import benchmark_card, license_warning

        bench, root, category = benchmark
        dd = zoo.build(bench, root, category)
        card = benchmark_card(bench, category, dd, repo_id)
        warnings += [w for w in (license_warning(bench),) if w]
    else:
        dd, prov = load_source(source, seed=seed, counts=counts, size=size)
        card = card_for(dd, provenance=prov, license=license, repo_id=repo_id)
    shards = num_shards(dd)
    if dry_run is not None:
        files = write_repo_folder(dd, card, dry_run, shards)
        return PushResult(repo_id, files, card, dry_run_dir=Path(dry_run).expanduser().absolute(),
                          warnings=warnings)
    token = resolve_token(token)
    if not token:
        raise CadsdError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login` "
            "(or use --dry-run DIR to see what would be uploaded)"
        )
    try:
        result = _upload(repo_id, dd, card, shards, private=private, token=token)
        result.warnings = warnings
        return result
    except CadsdError as err:
        raise CadsdError(scrub(str(err), token)) from None
    except client_errors() as err:  # HTTP, auth and connection errors of the client libraries
        raise CadsdError(
            f"push to {repo_id} failed ({scrub(describe_error(err), token)}). Check the repo id, "
            "that the token may write to it, and your network."
        ) from None


def _upload(
    repo_id: str,
    dd: datasets.DatasetDict,
    card: DatasetCard,
    shards: dict[str, int],
    *,
    private: bool,
    token: str,
) -> PushResult:
    from huggingface_hub import DatasetCard, HfApi, hf_hub_download

    info = dd.push_to_hub(
        repo_id,
        private=private,
        token=token,
        num_shards=shards,
        commit_message="Upload CAD-SD data (cadsd push)",
    )
    readme = hf_hub_download(
        repo_id, "README.md", repo_type="dataset", token=token, revision=getattr(info, "oid", None)
    )
    merged = merge_card(card, DatasetCard.load(readme))
    api = HfApi(token=token)
    api.upload_file(
        path_or_fileobj=str(merged).encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Add dataset card (cadsd push)",
    )
    files = sorted(
        f for f in api.list_repo_files(repo_id, repo_type="dataset") if f != ".gitattributes"
    )
    url = f"{api.endpoint}/datasets/{repo_id}"
    return PushResult(repo_id, files, merged, url=url)

"""``cadsd download --dataset NAME``: get MVTec AD, BTAD or MVTec LOCO AD into the cache.

The same machinery as CAD-SD's (:mod:`cadsd.getting.download`): the official archive is fetched into a
kept staging folder (HTTP Range resume), checked against its published sha256, extracted
safely (no absolute paths, no ``..``, no links out, size limits), its categories checked, a
checksum manifest written, and only then renamed into ``$CADSD_CACHE/<name>``. A copy obtained
elsewhere is imported with ``--source PATH`` (an archive or a folder). Offline, the error names
the URL and ``--source PATH``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from cadsd.errors import CadsdError, DownloadError, LayoutError, short_message
from cadsd.files import check_output, replace_folder, sha256_file
from cadsd.format.cache import cache_root
from cadsd.format.links import copy_dataset
from cadsd.getting.archive import Limits, archive_kind, extract
from cadsd.getting.download import _stage_for, output
from cadsd.getting.fetch import Offline, Policy, fetch_url
from cadsd.getting.manifest import MANIFEST_NAME, write_manifest
from cadsd.zoo.base import Benchmark, check_copy


def benchmark_dir(bench: Benchmark, dest: str | Path | None = None) -> Path:
    """Where ``bench`` is (or will be) stored: ``dest``, else ``$CADSD_CACHE/<name>``."""
    return Path(dest).expanduser() if dest is not None else cache_root() / bench.name


def not_found_message(bench: Benchmark, where: Path) -> str:
    how = (f"get it with `cadsd download --dataset {bench.name}` (from {bench.url})"
           if bench.url else f"there is no public download of {bench.title}")
    return (f"{bench.title} is not in {where}; {how}, or import a copy obtained elsewhere "
            f"with `cadsd download --dataset {bench.name} --source PATH`. Licence: "
            f"{bench.license}.")


def _fetch_first(bench: Benchmark, dest: Path, urls: tuple[str, ...],
                 policy: Policy) -> tuple[Path, str, Path]:
    """The archive from the first of ``urls`` that serves it (the official ones are checked
    against the published sha256); each failure is kept and all are named if none works. An
    offline machine fails at once (every URL would)."""
    failures = []
    for url in urls:
        kept = _stage_for(dest, "url", url)
        try:
            archive = fetch_url(url, kept, sha256=bench.sha256 if url in bench.urls else None,
                                policy=policy)
        except Offline:
            raise
        except DownloadError as err:  # a partial file stays for the next attempt to resume
            failures.append(str(err))
            with contextlib.suppress(OSError):
                kept.rmdir()  # only when empty
            continue
        return archive, url, kept
    if len(failures) == 1:
        raise DownloadError(failures[0])
    raise DownloadError(f"none of the {len(failures)} official URLs of {bench.title} served the "
                        "archive: " + "; ".join(failures))


def download(bench: Benchmark, source: str | None = None, dest: str | Path | None = None, *,
             force: bool = False, policy: Policy | None = None,
             limits: Limits | None = None) -> tuple[Path, list[str]]:
    """Fetch or import ``bench`` into ``dest``; returns the folder and the count differences
    from the published numbers (empty when they all agree)."""
    given_url = source if source and source.startswith(("http://", "https://")) else None
    local = Path(source).expanduser() if source and given_url is None else None
    out = output(benchmark_dir(bench, dest), force, (local,) if local is not None else ())
    dest = out.path
    if not force and (dest / MANIFEST_NAME).is_file():
        return dest, check_copy(bench, dest)[1]
    check_output(out)  # before anything is fetched or copied
    urls = (given_url,) if given_url else bench.urls
    if local is None and not urls:
        raise CadsdError(f"{bench.title} has no public download: pass --source PATH")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import-", dir=dest.parent))
    url = urls[0] if local is None else None
    kept = None
    try:
        if local is not None:
            if local.is_dir():
                # links that leave the folder are refused, never followed
                tree = copy_dataset(bench.find_root(local), work / "tree")
            elif archive_kind(local) is None:
                raise DownloadError(f"{local} is neither a folder nor a .zip/.tar archive")
            else:
                if bench.sha256 and sha256_file(local) != bench.sha256:
                    raise DownloadError(f"{local} is not the published {bench.title} archive "
                                        f"(sha256 differs from {bench.sha256[:16]}...)")
                tree = extract(local, work / "tree", limits)
        else:
            archive, url, kept = _fetch_first(bench, dest, urls, policy or Policy())
            tree = extract(archive, work / "tree", limits)
        root = bench.find_root(tree)
        write_manifest(root, source=str(local or url))
        replace_folder(root, out)
    except Offline as err:
        raise DownloadError(
            f"{err}. This machine looks offline, or the site is blocked. Download {url} "
            f"elsewhere (licence: {bench.license}) and import it with `cadsd download --dataset "
            f"{bench.name} --source PATH`."
        ) from None
    except LayoutError as err:
        raise DownloadError(f"{local or url} does not hold {bench.title}: {err}") from None
    except OSError as err:  # disk full, permissions: the user's to fix, not a traceback
        raise DownloadError(f"cannot write {bench.title} to {dest}: "
                            f"{short_message(str(err))}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
        with contextlib.suppress(OSError):
            kept.parent.rmdir()
    return dest, check_copy(bench, dest)[1]

"""`cadsd download` / `cadsd verify`: sources, resume, offline, safe extraction, manifest."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_helpers import run_cli

from cadsd.errors import CadsdError, DownloadError
from cadsd.format import hf
from cadsd.format.layout import WRAPPER_NAME
from cadsd.getting.archive import Limits, extract
from cadsd.getting.download import download
from cadsd.getting.fetch import Policy, reachable
from cadsd.getting.manifest import MANIFEST_NAME, verify

FAST = Policy(retries=3, backoff=0.0, connect_timeout=2.0, read_timeout=5.0)


def _zip_tree(root: Path, out: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return out


# -- local sources, manifest, verify ----------------------------------------------------------
def test_zip_download_verify_names_a_flipped_byte(make_layout, small_counts, tmp_path, capsys):
    root = make_layout(tmp_path / "src")
    archive = _zip_tree(root, tmp_path / "set.zip", prefix=f"{WRAPPER_NAME}/")
    dest = tmp_path / "data" / "CAD-SD"
    result = download(str(archive), dest, expect=small_counts)
    assert result.ok and result.files == sum(small_counts.values())
    assert hf.fingerprint(dest) == hf.fingerprint(root)  # wrapper folder removed, bytes equal
    assert (dest / MANIFEST_NAME).is_file() and verify(dest).ok
    assert sorted(p.name for p in dest.parent.iterdir()) == ["CAD-SD"]  # no staging left

    victim = sorted((dest / "test" / "2_paint").iterdir())[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    (dest / "test" / "0_good" / "extra.jpg").write_bytes(b"x")
    (dest / "train" / "0_good" / min(p.name for p in (dest / "train/0_good").iterdir())).unlink()
    report = verify(dest)
    assert report.changed == [f"test/2_paint/{victim.name}"]
    assert report.extra == ["test/0_good/extra.jpg"] and len(report.missing) == 1
    code, out = run_cli(["verify", str(dest)], capsys)
    assert code == 1 and f"changed test/2_paint/{victim.name}" in out


def test_folder_import_copies_and_count_mismatch_keeps_files(make_layout, tmp_path, capsys):
    root = make_layout(tmp_path / "src", masks=True)
    dest = tmp_path / "dest"
    code, out = run_cli(["download", "--source", str(root), "--dest", str(dest)], capsys)
    # Small counts differ from the paper's: reported, exit 1, but the complete copy is kept.
    assert code == 1 and "kept" in out and "--expect" in out
    assert hf.fingerprint(dest) == hf.fingerprint(root)
    assert sorted(p.relative_to(dest) for p in (dest / "ground_truth").rglob("*.png")) == sorted(
        p.relative_to(root) for p in (root / "ground_truth").rglob("*.png")
    )
    assert (root / "train").is_dir()  # the source is copied, not moved
    # A rerun finds the verified copy and does nothing; --force replaces it.
    assert download(str(root), dest).already_present
    assert download(str(root), dest, force=True, run_validation=False).files > 0


def test_existing_foreign_dest_is_refused(make_layout, tmp_path):
    root = make_layout(tmp_path / "src")
    dest = tmp_path / "dest"
    (dest / "mine").mkdir(parents=True)
    with pytest.raises(CadsdError, match="--force"):
        download(str(root), dest)
    assert (dest / "mine").is_dir()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DownloadError, match="cannot write"):  # an OSError, not a traceback
        download(str(root), tmp_path / "a_file" / "CAD-SD")


def test_hf_source_writes_the_layout_back_byte_for_byte(make_layout, tmp_path, monkeypatch):
    root = make_layout(tmp_path / "src", masks=True)
    monkeypatch.setattr(hf, "load", lambda source: hf.build(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no reachability probe: the copy is "cached"
    dest = tmp_path / "dest"
    download("hf:org/cadsd", dest, run_validation=False)
    for path in root.rglob("*"):
        if path.is_file():
            assert (dest / path.relative_to(root)).read_bytes() == path.read_bytes()


# -- safe extraction --------------------------------------------------------------------------
def _zip_with(tmp_path: Path, name: str, data: bytes = b"evil", symlink: bool = False) -> Path:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train/0_good/ok.jpg", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    return path


def _tar_with(tmp_path: Path, member: tarfile.TarInfo) -> Path:
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("train/0_good/ok.jpg")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        tf.addfile(member, io.BytesIO(b"evil") if member.isreg() else None)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _regular(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 4
    return info


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda t: _zip_with(t, "../evil"), "'..'"),
        (lambda t: _zip_with(t, "train/../../evil"), "'..'"),
        (lambda t: _zip_with(t, "..\\evil"), "'..'"),
        (lambda t: _zip_with(t, str(t / "abs_evil")), "absolute"),
        (lambda t: _zip_with(t, "C:/evil"), "absolute"),
        (lambda t: _zip_with(t, "train/link", data=b"../../../evil", symlink=True), "link"),
        (lambda t: _tar_with(t, _regular("../evil")), "'..'"),
        (lambda t: _tar_with(t, _regular(str(t / "abs_evil"))), "absolute"),
        (lambda t: _tar_with(t, _link("train/l", "../../evil", tarfile.SYMTYPE)), "outside"),
        (lambda t: _tar_with(t, _link("train/l", "/etc/passwd", tarfile.SYMTYPE)), "outside"),
        (lambda t: _tar_with(t, _link("train/h", "../evil", tarfile.LNKTYPE)), "outside"),
        (lambda t: _tar_with(t, _link("train/l", "ok.jpg", tarfile.SYMTYPE)), "not allowed"),
    ],
)
def test_unsafe_archives_are_refused(make, reason, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    archive = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match=reason):
        extract(archive, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, archive.name])
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "abs_evil").exists()


def test_archive_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/0_good/zeros.jpg", b"\0" * (8 << 20))  # 8 MiB -> ~8 KiB
    with pytest.raises(DownloadError, match="ratio"):
        extract(bomb, tmp_path / "a")
    with pytest.raises(DownloadError, match="limit"):
        extract(bomb, tmp_path / "b", Limits(max_total_bytes=1 << 20, max_ratio=1e9))
    many = tmp_path / "many.tar"
    with tarfile.open(many, "w") as tf:
        for i in range(20):
            tf.addfile(tarfile.TarInfo(f"train/0_good/{i}.jpg"), io.BytesIO(b""))
    with pytest.raises(DownloadError, match="members"):
        extract(many, tmp_path / "c", Limits(max_members=10))
    assert not any((tmp_path / d).exists() for d in "abc")


def test_download_of_unsafe_archive_leaves_no_dest(tmp_path):
    archive = _zip_with(tmp_path, "../evil")
    with pytest.raises(DownloadError, match="refusing"):
        download(str(archive), tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


# -- URL source -------------------------------------------------------------------------------
class _ZipServer:
    """Serves one file; can ignore Range, or cut the first response short."""

    def __init__(self, payload: bytes, *, ranges: bool = True, cut_first: bool = False) -> None:
        self.payload, self.ranges, self.cut_first = payload, ranges, cut_first
        self.range_headers: list[str | None] = []
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.range_headers.append(rng)
                data, status = server.payload, 200
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    data, status = server.payload[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                if status == 206:
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}",
                    )
                self.end_headers()
                if server.cut_first and len(server.range_headers) == 1:
                    data = data[: len(data) // 2]  # then the connection closes
                self.wfile.write(data)
                server.sent += len(data)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cadsd.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def zipped(make_layout, tmp_path) -> tuple[Path, bytes]:
    root = make_layout(tmp_path / "src", size=96)  # ~100 KB: several read chunks
    return root, _zip_tree(root, tmp_path / "set.zip").read_bytes()


def test_url_resumes_an_interrupted_transfer_with_range(zipped, tmp_path):
    root, payload = zipped
    server = _ZipServer(payload, cut_first=True)
    try:
        dest = tmp_path / "dest"
        download(
            server.url,
            dest,
            sha256=hashlib.sha256(payload).hexdigest(),
            policy=FAST,
            run_validation=False,
        )
    finally:
        server.close()
    first, second = server.range_headers
    kept = int(second.removeprefix("bytes=").removesuffix("-"))
    assert first is None and 0 < kept <= len(payload) // 2
    # The second request sent only the rest.
    assert server.sent == len(payload) // 2 + len(payload) - kept
    assert hf.fingerprint(dest) == hf.fingerprint(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "set.zip", "src"]


def test_url_rerun_continues_a_kept_partial_file(zipped, tmp_path, monkeypatch):
    root, payload = zipped
    dest = tmp_path / "dest"
    server = _ZipServer(payload)
    # A previous run was killed after 1000 bytes: its partial file sits in the kept staging.
    from cadsd.getting.download import _stage_for

    stage = _stage_for(dest.absolute(), "url", server.url)
    stage.mkdir(parents=True)
    (stage / "archive.part").write_bytes(payload[:1000])
    try:
        download(server.url, dest, policy=FAST, run_validation=False)
    finally:
        server.close()
    assert server.range_headers == ["bytes=1000-"] and server.sent == len(payload) - 1000
    assert hf.fingerprint(dest) == hf.fingerprint(root)


def test_url_without_range_support_restarts(zipped, tmp_path):
    root, payload = zipped
    server = _ZipServer(payload, ranges=False, cut_first=True)
    try:
        download(server.url, tmp_path / "dest", policy=FAST, run_validation=False)
    finally:
        server.close()
    assert len(server.range_headers) == 2 and server.range_headers[1] is not None
    assert hf.fingerprint(tmp_path / "dest") == hf.fingerprint(root)


def test_url_wrong_checksum_is_refused(zipped, tmp_path):
    _, payload = zipped
    server = _ZipServer(payload)
    try:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            download(server.url, tmp_path / "dest", sha256="0" * 64, policy=FAST)
    finally:
        server.close()
    assert not (tmp_path / "dest").exists()
    assert not list(tmp_path.rglob("archive*"))  # the bad file is not kept for a "resume"


def test_the_offline_probe_answers_within_its_timeout(zipped) -> None:
    server = _ZipServer(zipped[1])
    try:
        assert reachable(server.url, 2.0)  # any answer counts (this server has no HEAD: 501)
    finally:
        server.close()
    start = time.monotonic()
    assert not reachable("http://127.0.0.1:9/", 1.0)  # nothing listens on the discard port
    assert time.monotonic() - start < 2.0


def test_offline_url_fails_fast_with_a_clear_message(tmp_path, capsys):
    dest = tmp_path / "dest"
    start = time.monotonic()
    code, out = run_cli(
        ["download", "--source", "http://127.0.0.1:9/cadsd.zip", "--dest", str(dest)], capsys
    )
    assert time.monotonic() - start < 10
    assert code == 1 and "--source PATH" in out and "Traceback" not in out
    assert not dest.exists() and list(tmp_path.iterdir()) == []


# -- Google Drive (at the gdown boundary) -----------------------------------------------------
class _FakeDrive:
    """Stands in for gdown: lists a local tree as the Drive folder and 'downloads' its files."""

    def __init__(self, root: Path, fail: dict[str, Exception] | None = None) -> None:
        self.root, self.fail, self.calls = root, dict(fail or {}), []

    def download_folder(self, **kwargs):
        from gdown.download import GoogleDriveFileToDownload

        assert kwargs["skip_download"] and kwargs["timeout"]
        return [
            GoogleDriveFileToDownload(
                id=p.relative_to(self.root).as_posix(),
                path=f"{WRAPPER_NAME}/{p.relative_to(self.root).as_posix()}",
                local_path="unused",
            )
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        ]

    def download(self, *, id, output, progress=None, **kwargs):
        self.calls.append(id)
        if id in self.fail:
            raise self.fail[id]
        data = (self.root / id).read_bytes()
        Path(output).write_bytes(data)
        if progress:
            progress(len(data), len(data))
        return output


def test_gdrive_download_resumes_after_rate_limit(make_layout, small_counts, tmp_path, monkeypatch):
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    root = make_layout(tmp_path / "drive")
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    limited = FileURLRetrievalError("Too many users have viewed or downloaded this file recently")
    drive = _FakeDrive(root, fail={names[5]: limited})
    monkeypatch.setattr(gdown, "download_folder", drive.download_folder)
    monkeypatch.setattr(gdown, "download", drive.download)
    dest = tmp_path / "cache" / "CAD-SD"
    with pytest.raises(DownloadError, match="rerun"):
        download("gdrive", dest, policy=FAST)
    assert not dest.exists()  # nothing that passes for a dataset
    assert drive.calls.count(names[5]) == FAST.retries + 1  # retried with backoff

    # A partial file that gdown left behind must not end up in the dataset.
    staged = next((tmp_path / "cache").rglob("good_000.jpg"))
    (staged.parent / "good_000.jpgAbCdEfGh.part").write_bytes(b"partial")
    drive.fail.clear()
    drive.calls.clear()
    result = download("gdrive", dest, expect=small_counts, policy=FAST)
    assert result.ok and hf.fingerprint(dest) == hf.fingerprint(root)
    assert drive.calls == names[5:]  # the rerun fetched only what was missing
    assert not list(dest.rglob("*.part"))
    assert not (dest.parent / ".CAD-SD.download").exists()


def test_gdrive_offline_and_bad_hash(make_layout, tmp_path, monkeypatch, capsys):
    import gdown
    import requests

    def offline(**kwargs):
        raise requests.ConnectionError("Name or service not known")

    monkeypatch.setattr(gdown, "download_folder", offline)
    monkeypatch.setenv("CADSD_CACHE", str(tmp_path / "cache"))
    code, out = run_cli(["download"], capsys)
    assert code == 1 and "offline" in out and "--source PATH" in out
    assert not (tmp_path / "cache" / "CAD-SD").exists()
    with pytest.raises(CadsdError):
        verify(tmp_path / "cache" / "CAD-SD")

    root = make_layout(tmp_path / "drive")
    first = min(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    drive = _FakeDrive(root, fail={first: AssertionError("File hash doesn't match")})
    monkeypatch.setattr(gdown, "download_folder", drive.download_folder)
    monkeypatch.setattr(gdown, "download", drive.download)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download("gdrive", tmp_path / "dest", policy=FAST)
    assert not (tmp_path / "dest").exists()
    shutil.rmtree(tmp_path / ".dest.download")

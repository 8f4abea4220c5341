"""Hostile image archives: the check sees what `docker load` will load, and bounds what it costs.

Real `docker save` archives of real images, altered the way an attacker would,
against the real dockerd: a refused archive never reaches `docker load`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import subprocess
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from engine.archive_check import inspect_archive
from engine.errors import ImageFailure
from engine.fetch import VerifiedArchive
from engine.images import ImageLoader
from tests.images import BUSYBOX_TAG, build_image, busybox_image, export_archive, remove_images

MiB = 1024 * 1024
SECOND_TAG = "c2d-test/hidden-second:1"


def _members(raw: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isfile() else None
            out.append((m, f.read() if f else None))
    return out


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]], fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _archive(path: Path) -> VerifiedArchive:
    return VerifiedArchive(path, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)


@pytest.fixture(scope="module")
def busybox(docker_client) -> str:
    return busybox_image(docker_client)


@pytest.fixture(scope="module")
def second_image(docker_client, busybox):
    image_id = build_image(docker_client, 'FROM c2d-test/busybox:1\nLABEL c2d-test.second="1"\n',
                           SECOND_TAG)
    yield image_id
    remove_images(docker_client, [SECOND_TAG])


@pytest.fixture(scope="module")
def busybox_save(docker_client, busybox, tmp_path_factory) -> bytes:
    """An uncompressed `docker save` of the busybox test image."""
    path = tmp_path_factory.mktemp("save") / "bb.tar"
    export_archive(docker_client, BUSYBOX_TAG, path, gzip=False)
    return path.read_bytes()


@pytest.fixture
def load_calls(docker_client, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = docker_client.api.load_image
    monkeypatch.setattr(docker_client.api, "load_image",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.docker
def test_hidden_second_manifest_is_refused(
    docker_client, second_image, load_calls, tmp_path: Path
) -> None:
    """One-image manifest.json first, then `x/../manifest.json` naming two: Docker loads the second."""
    two = tmp_path / "two.tar"
    export_archive(docker_client, [BUSYBOX_TAG, SECOND_TAG], two, gzip=False)
    entries = _members(two.read_bytes())
    manifest2 = next(d for m, d in entries if m.name == "manifest.json")
    assert manifest2 is not None
    first = json.loads(manifest2)[:1]
    rest = [(m, d) for m, d in entries if m.name != "manifest.json"]
    crafted = tmp_path / "hidden.tar"
    crafted.write_bytes(_tar([_file("manifest.json", json.dumps(first).encode()), *rest,
                              _file("x/../manifest.json", manifest2)]))
    # The tags this archive could re-point (not every image on the daemon: others may load meanwhile).
    before = {tag: docker_client.images.get(tag).id for tag in (BUSYBOX_TAG, SECOND_TAG)}
    with pytest.raises(ImageFailure) as err:
        ImageLoader(docker_client, tmp_path / "state").ensure_loaded(_archive(crafted))
    assert err.value.code == "IMAGE_INVALID"
    assert "same normalised path" in err.value.message
    assert load_calls == []
    assert {tag: docker_client.images.get(tag).id for tag in before} == before


def _with(base: bytes, *extra: tuple[tarfile.TarInfo, bytes | None], fmt=tarfile.GNU_FORMAT) -> bytes:
    return _tar([*_members(base), *extra], fmt=fmt)


def _global_pax(base: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "x"}) as tar:
        for info, data in _members(base):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


TRICKS = {
    "dot-slash duplicate": (lambda b: _with(b, _file("./manifest.json", b"[]")), "same normalised"),
    "absolute name": (lambda b: _with(b, _file("/manifest.json", b"[]")), "absolute path"),
    "dot-dot escape": (lambda b: _with(b, _file("../etc/x", b"x")), "leaves the archive"),
    "hard link": (lambda b: _with(b, _special("h", tarfile.LNKTYPE, "repositories")), "hard link"),
    "fifo": (lambda b: _with(b, _special("f", tarfile.FIFOTYPE)), "fifo"),
    "char device": (lambda b: _with(b, _special("c", tarfile.CHRTYPE)), "device"),
    "link out": (lambda b: _with(b, _special("l", tarfile.SYMTYPE, "../../etc")), "out of the archive"),
    "absolute link": (lambda b: _with(b, _special("l", tarfile.SYMTYPE, "/etc")), "absolute target"),
    "entry below a link": (
        lambda b: _with(b, _special("d", tarfile.SYMTYPE, "."), _file("d/manifest.json", b"[]")),
        "below a link",
    ),
    "link replacing a dir": (
        lambda b: _with(b, _file("d/x", b"x"), _special("d", tarfile.SYMTYPE, ".")),
        "same normalised",
    ),
    "data after the end": (lambda b: b + b"\0" * 1024 + b"hidden" + b"\0" * 506, "after the end"),
    "global pax header": (_global_pax, "global"),
}


@pytest.mark.docker
@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_ambiguous_archives_are_refused(busybox_save: bytes, tmp_path: Path, trick: str) -> None:
    build, words = TRICKS[trick]
    path = tmp_path / "a.tar"
    path.write_bytes(build(busybox_save))
    with pytest.raises(ImageFailure) as err:
        inspect_archive(path)
    assert err.value.code == "IMAGE_INVALID"
    assert words in err.value.message


@pytest.mark.docker
@pytest.mark.parametrize("compress", ["gzip", "xz", "none"])
def test_real_archive_passes_in_every_format_docker_reads(
    busybox_save: bytes, busybox: str, tmp_path: Path, compress: str
) -> None:
    data = {"gzip": gzip.compress, "xz": lzma.compress, "none": bytes}[compress](busybox_save)
    path = tmp_path / "bb.tar"
    path.write_bytes(data)
    info = inspect_archive(path)
    assert info.image_id == busybox
    assert info.expanded_bytes >= len(busybox_save)


@pytest.mark.docker
def test_the_gzip_decoder_reads_as_dockers_does(busybox_save: bytes, busybox: str, tmp_path: Path) -> None:
    """The check's gzip decoder (ISA-L's, for speed) reads several gzip members as one stream,
    as Go's gzip reader does, and refuses an archive cut off inside its gzip stream."""
    half = len(busybox_save) // 2
    path = tmp_path / "members.tar.gz"
    path.write_bytes(gzip.compress(busybox_save[:half]) + gzip.compress(busybox_save[half:]))
    assert inspect_archive(path).image_id == busybox
    whole = gzip.compress(busybox_save)
    path.write_bytes(whole[: len(whole) - 4096])
    with pytest.raises(ImageFailure) as err:
        inspect_archive(path)
    assert err.value.code == "IMAGE_INVALID"


# ---------------------------------------------------------------- bombs


def _replace_layer(base: bytes, layer: bytes) -> bytes:
    """The busybox archive with its one layer.tar swapped for ``layer`` (Docker unpacks it)."""
    return _tar([(m, layer if m.name.endswith("layer.tar") else d) if m.isfile() else (m, d)
                 for m, d in ((_resize(m, layer), d) for m, d in _members(base))])


def _resize(info: tarfile.TarInfo, layer: bytes) -> tarfile.TarInfo:
    if info.name.endswith("layer.tar"):
        info.size = len(layer)
    return info


def _zero_layer(size: int) -> bytes:
    return _tar([_file("zeros", b"\0" * size)])


@pytest.mark.docker
def test_gzip_bomb_outer_is_refused_while_reading(busybox_save: bytes, tmp_path: Path) -> None:
    """A tiny gzipped archive whose layer is 64 MiB of zeros: over a 16 MiB expanded cap."""
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip.compress(_replace_layer(busybox_save, _zero_layer(64 * MiB)), 9))
    assert path.stat().st_size < 1 * MiB
    with pytest.raises(ImageFailure) as err:
        inspect_archive(path, max_expanded_bytes=16 * MiB)
    assert err.value.code == "IMAGE_TOO_LARGE"
    assert str(16 * MiB) in err.value.message


@pytest.mark.docker
def test_gzip_bomb_inside_a_layer_is_counted(busybox_save: bytes, tmp_path: Path) -> None:
    """An uncompressed outer tar whose layer.tar is itself a gzip: Docker decompresses it too."""
    layer = gzip.compress(_zero_layer(64 * MiB), 9)
    path = tmp_path / "bomb.tar"
    path.write_bytes(_replace_layer(busybox_save, layer))
    assert path.stat().st_size < 1 * MiB
    with pytest.raises(ImageFailure) as err:
        inspect_archive(path, max_expanded_bytes=16 * MiB)
    assert err.value.code == "IMAGE_TOO_LARGE"


SPARSE_FORMATS = {
    "gnu": ["--format=gnu"],
    "pax-0.0": ["--format=posix", "--sparse-version=0.0"],
    "pax-0.1": ["--format=posix", "--sparse-version=0.1"],
    "pax-1.0": ["--format=posix", "--sparse-version=1.0"],
}


@pytest.mark.docker
@pytest.mark.parametrize("fmt", sorted(SPARSE_FORMATS))
def test_sparse_file_in_a_layer_counts_at_its_logical_size(
    busybox_save: bytes, tmp_path: Path, fmt: str
) -> None:
    """A 1 GiB sparse file is a few KB of tar; Docker's unpacking writes every zero."""
    work = tmp_path / "sparse"
    work.mkdir()
    subprocess.run(["truncate", "-s", "1G", str(work / "big")], check=True)
    (work / "small").write_bytes(b"after the sparse file")
    subprocess.run(["tar", "--sparse", *SPARSE_FORMATS[fmt], "-C", str(work),
                    "-cf", str(tmp_path / "layer.tar"), "big", "small"], check=True)
    layer = (tmp_path / "layer.tar").read_bytes()
    assert len(layer) < 1 * MiB
    path = tmp_path / "sparse-bomb.tar"
    path.write_bytes(_replace_layer(busybox_save, layer))
    with pytest.raises(ImageFailure) as err:
        inspect_archive(path, max_expanded_bytes=64 * MiB)
    assert err.value.code == "IMAGE_TOO_LARGE"
    # Under a larger cap the layer reads through to its end (offsets stay right).
    assert inspect_archive(path, max_expanded_bytes=2 * 1024 * MiB).expanded_bytes > 1024 * MiB


def _entry_bomb(count: int) -> bytes:
    """``count`` empty files e0000000..: built from one header, patched (fast)."""
    template = tarfile.TarInfo("e0000000").tobuf(tarfile.USTAR_FORMAT)
    base_sum = int(template[148:154], 8)
    digits_sum = sum(b"0000000")
    out = bytearray()
    for i in range(count):
        name = b"%07d" % i
        block = bytearray(template)
        block[1:8] = name
        block[148:156] = b"%06o\0 " % (base_sum - digits_sum + sum(name))
        out += block
    return bytes(out) + b"\0" * 1024


@pytest.fixture(scope="module")
def entry_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "entries.tar.gz"
    path.write_bytes(gzip.compress(_entry_bomb(200_000), 6))
    return path


def test_entry_bomb_is_refused_early_with_bounded_memory(entry_bomb: Path) -> None:
    assert entry_bomb.stat().st_size < 2 * MiB
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ImageFailure) as err:
            inspect_archive(entry_bomb)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.code == "IMAGE_INVALID"
    assert "more than 10000 entries" in err.value.message
    assert peak < 8 * MiB, f"inspection held {peak / MiB:.1f} MiB for a 200k-entry archive"
    assert time.monotonic() - started < 10




def test_a_refused_gzipped_archive_leaves_no_decompression_thread(entry_bomb: Path) -> None:
    """The outer gunzip runs in a thread of its own: a refusal mid-way must end it too
    (one leaked thread per hostile archive would add up)."""
    import threading

    before = threading.active_count()
    refusals = []  # each keeps its traceback (and so the check's frames) alive
    for _ in range(3):
        with pytest.raises(ImageFailure) as refused:
            inspect_archive(entry_bomb)
        refusals.append(refused)
    assert threading.active_count() == before


@pytest.mark.docker
def test_a_link_between_layers_is_accepted(busybox_save: bytes, busybox: str, tmp_path: Path) -> None:
    """`docker save` links a repeated layer to its first copy: that stays loadable."""
    layer = next(m.name for m, _d in _members(busybox_save) if m.name.endswith("layer.tar"))
    path = tmp_path / "linked.tar"
    path.write_bytes(_with(busybox_save, _special("again/layer.tar", tarfile.SYMTYPE, f"../{layer}")))
    assert inspect_archive(path).image_id == busybox


@pytest.mark.docker
def test_the_check_reads_a_stream_once_front_to_back(busybox_save: bytes, busybox: str) -> None:
    """A pipe (no seek) works: the check could run on a download as it arrives."""
    import os
    import threading

    from engine.archive_check import inspect_stream

    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            for i in range(0, len(busybox_save), 64 * 1024):
                pipe.write(busybox_save[i:i + 64 * 1024])

    threading.Thread(target=feed, daemon=True).start()
    with os.fdopen(read_fd, "rb") as pipe:
        assert inspect_stream(pipe, max_expanded_bytes=64 * MiB).image_id == busybox

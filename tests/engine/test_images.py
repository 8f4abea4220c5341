"""engine.images against a real dockerd: one image per archive, loaded once, by id."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import docker.errors
import pytest

import engine.images as images_mod
from engine.errors import ImageFailure
from engine.fetch import VerifiedArchive
from engine.images import ImageLoader, inspect_archive
from tests.images import build_image, export_archive

pytestmark = pytest.mark.docker


def _archive(path: Path, digest: str | None = None) -> VerifiedArchive:
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    return VerifiedArchive(path=path, sha256=digest, size=path.stat().st_size)


def _unique_image(client, tag: str) -> str:
    """An image no other test has: its label makes its id unique."""
    dockerfile = (
        f'FROM c2d-test/busybox:1\nLABEL c2d-test.unique="{uuid.uuid4().hex}"\nCMD ["true"]\n'
    )
    return build_image(client, dockerfile, tag)


class LoadCounter:
    """Counts calls to the SDK's load_image while passing them through to dockerd."""

    def __init__(self, client):
        self.calls = 0
        self._real = client.api.load_image

        def counted(*args, **kwargs):
            self.calls += 1
            return self._real(*args, **kwargs)

        client.api.load_image = counted
        self.client = client

    def restore(self) -> None:
        self.client.api.load_image = self._real


@pytest.fixture
def load_counter(docker_client):
    counter = LoadCounter(docker_client)
    yield counter
    counter.restore()


@pytest.fixture
def removed_image_archive(docker_client, busybox, tmp_path: Path) -> tuple[VerifiedArchive, str]:
    """A gzipped archive of a fresh image that is NOT in Docker any more."""
    tag = f"c2d-test/fresh-{uuid.uuid4().hex[:8]}:1"
    image_id = _unique_image(docker_client, tag)
    path = tmp_path / "fresh.tar.gz"
    digest = export_archive(docker_client, tag, path)
    docker_client.images.remove(image_id, force=True)
    yield _archive(path, digest), image_id
    try:
        docker_client.images.remove(image_id, force=True)
    except docker.errors.ImageNotFound:
        pass


def test_loads_once_then_uses_the_map(
    docker_client, removed_image_archive, load_counter, tmp_path: Path
) -> None:
    archive, image_id = removed_image_archive
    loader = ImageLoader(docker_client, tmp_path / "state")
    assert loader.ensure_loaded(archive) == image_id
    assert docker_client.images.get(image_id).id == image_id
    assert load_counter.calls == 1
    assert json.loads((tmp_path / "state" / "images.json").read_text()) == {
        archive.sha256: image_id
    }

    assert loader.ensure_loaded(archive) == image_id
    assert ImageLoader(docker_client, tmp_path / "state").ensure_loaded(archive) == image_id
    assert load_counter.calls == 1, "a loaded image must not be loaded again"


def test_a_cached_image_costs_one_inspect_and_no_rewrite(
    docker_client, removed_image_archive, tmp_path: Path, request
) -> None:
    """A warm job's LOADING: one inspect (the image exists, its layout is known); the
    last-use record is not rewritten by jobs within a second of each other."""
    archive, image_id = removed_image_archive
    loader = ImageLoader(docker_client, tmp_path / "state")
    loader.ensure_loaded(archive)
    record = tmp_path / "state" / "loaded.json"
    before = record.stat().st_mtime_ns, record.read_text()
    sent = request.getfixturevalue("docker_sent")  # from here on
    assert loader.ensure_loaded(archive) == image_id
    assert sent == [f"GET /images/{image_id}/json"]
    assert (record.stat().st_mtime_ns, record.read_text()) == before


def test_reloads_when_the_image_was_removed(
    docker_client, removed_image_archive, load_counter, tmp_path: Path
) -> None:
    archive, image_id = removed_image_archive
    loader = ImageLoader(docker_client, tmp_path / "state")
    loader.ensure_loaded(archive)
    docker_client.images.remove(image_id, force=True)
    assert loader.ensure_loaded(archive) == image_id
    assert load_counter.calls == 2
    docker_client.images.get(image_id)


def test_archive_cannot_hijack_an_existing_tag(docker_client, busybox, tmp_path: Path) -> None:
    tag = f"c2d-test/victim-{uuid.uuid4().hex[:8]}:1"
    intruder = _unique_image(docker_client, tag)
    path = tmp_path / "intruder.tar"
    export_archive(docker_client, tag, path, gzip=False)
    docker_client.images.remove(intruder, force=True)
    victim = _unique_image(docker_client, tag)
    try:
        loaded = ImageLoader(docker_client, tmp_path / "state").ensure_loaded(_archive(path))
        assert loaded == intruder
        assert docker_client.images.get(tag).id == victim, (
            "the operator's tag must still name its image"
        )
    finally:
        for image_id in (intruder, victim):
            try:
                docker_client.images.remove(image_id, force=True)
            except docker.errors.ImageNotFound:
                pass


def test_two_images_refused_before_docker_sees_them(
    docker_client, busybox, make_image, load_counter, tmp_path: Path
) -> None:
    other = make_image("second", "echo second")
    path = tmp_path / "two.tar.gz"
    export_archive(docker_client, ["c2d-test/busybox:1", "c2d-test/second:1"], path)
    with pytest.raises(ImageFailure) as err:
        ImageLoader(docker_client, tmp_path / "state").ensure_loaded(_archive(path))
    assert err.value.code == "IMAGE_INVALID"
    assert "2 images" in err.value.message
    assert load_counter.calls == 0
    assert other  # the second image exists; the archive really held two
    assert not (tmp_path / "state" / "images.json").exists()


def _tar_with(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "content, words",
    [
        (b"this is not a tar at all" * 50, "not a readable"),
        (b"\x1f\x8b\x08\x00garbage-gzip" * 20, "not a readable"),
        (_tar_with({"hello.txt": b"hi"}), "no manifest.json"),
        (_tar_with({"manifest.json": b"{not json"}), "not valid JSON"),
        (_tar_with({"manifest.json": b"[]"}), "0 images"),
        (
            _tar_with({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}),
            "lacks the image config",
        ),
    ],
)
def test_invalid_archives(
    docker_client, load_counter, tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "bad.tar"
    path.write_bytes(content)
    with pytest.raises(ImageFailure) as err:
        ImageLoader(docker_client, tmp_path / "state").ensure_loaded(_archive(path))
    assert err.value.code == "IMAGE_INVALID"
    assert words in err.value.message
    assert load_counter.calls == 0


def test_docker_refusal_is_image_invalid(docker_client, load_counter, tmp_path: Path) -> None:
    """A well-formed manifest whose layers are missing: Docker refuses, we translate."""
    config = (
        b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:'
        + b"0" * 64
        + b'"]}}'
    )
    manifest = json.dumps(
        [{"Config": "c.json", "RepoTags": None, "Layers": ["missing/layer.tar"]}]
    ).encode()
    path = tmp_path / "broken.tar"
    path.write_bytes(_tar_with({"c.json": config, "manifest.json": manifest}))
    assert inspect_archive(path).image_id == "sha256:" + hashlib.sha256(config).hexdigest()
    with pytest.raises(ImageFailure) as err:
        ImageLoader(docker_client, tmp_path / "state").ensure_loaded(_archive(path))
    assert err.value.code == "IMAGE_INVALID"
    assert load_counter.calls == 1


def test_inspect_reports_id_and_tags(docker_client, busybox_archive, busybox) -> None:
    path, _digest = busybox_archive
    info = inspect_archive(path)
    assert info.image_id == busybox
    assert info.repo_tags == ("c2d-test/busybox:1",)


def test_public_surface() -> None:
    import engine.archive_check as check_mod
    import engine.image_gc as gc_mod

    assert set(images_mod.__all__) == {"ImageLoader", "ArchiveInfo", "inspect_archive"}
    assert set(check_mod.__all__) == {
        "ArchiveInfo", "inspect_archive", "inspect_stream", "MAX_MEMBERS", "MAX_LAYER_ENTRIES"
    }
    assert set(gc_mod.__all__) == {"LoadedImages", "write_json"}


@pytest.fixture
def three_removed_archives(docker_client, busybox, tmp_path: Path):
    """Three gzipped archives of fresh images that are NOT in Docker; cleaned up after."""
    made = []
    for i in range(3):
        tag = f"c2d-test/lru-{uuid.uuid4().hex[:8]}:1"
        image_id = _unique_image(docker_client, tag)
        path = tmp_path / f"lru{i}.tar.gz"
        digest = export_archive(docker_client, tag, path)
        docker_client.images.remove(image_id, force=True)
        made.append((_archive(path, digest), image_id))
    yield made
    for _archive_, image_id in made:
        try:
            docker_client.images.remove(image_id, force=True)
        except docker.errors.APIError:
            pass


def _present(client, image_id: str) -> bool:
    try:
        client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def test_loaded_images_are_collected_least_recently_used_first(
    docker_client, busybox, busybox_archive, three_removed_archives, tmp_path: Path
) -> None:
    (a, a_id), (b, b_id), (c, c_id) = three_removed_archives
    busy: set[str] = set()
    loader = ImageLoader(docker_client, tmp_path / "state", cache_max_bytes=1, grace_s=0,
                         busy=lambda: busy)
    loader.ensure_loaded(a)
    container = docker_client.containers.create(a_id)  # a container holds A
    try:
        loader.ensure_loaded(b)
        assert _present(docker_client, a_id), "an image a container uses is never collected"
    finally:
        container.remove(force=True)
    busy.add(b_id)  # an unfinished job uses B
    loader.ensure_loaded(c)
    assert not _present(docker_client, a_id), "the least recently used image goes first"
    assert _present(docker_client, b_id) and _present(docker_client, c_id)
    assert a.sha256 not in json.loads((tmp_path / "state" / "images.json").read_text())

    # The operator's own image (in Docker before the engine saw it) is never the engine's to remove.
    path, digest = busybox_archive
    busy.clear()
    assert loader.ensure_loaded(_archive(path, digest)) == busybox
    loader.ensure_loaded(a)  # reloaded: B and C are now older and free
    assert _present(docker_client, busybox) and _present(docker_client, a_id)
    assert not _present(docker_client, b_id) and not _present(docker_client, c_id)


def test_an_archive_checked_while_downloading_is_not_read_again(
    docker_client, removed_image_archive, load_counter, tmp_path: Path, monkeypatch
) -> None:
    """With the download's ArchiveInfo the loader goes straight to docker load (no second pass)."""
    archive, image_id = removed_image_archive
    checked = VerifiedArchive(archive.path, archive.sha256, archive.size,
                              info=inspect_archive(archive.path))

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the archive was decompressed a second time")

    monkeypatch.setattr(images_mod, "inspect_archive", no_second_pass)
    assert ImageLoader(docker_client, tmp_path / "state").ensure_loaded(checked) == image_id
    assert load_counter.calls == 1


def test_info_over_the_loaders_cap_is_checked_again(
    docker_client, removed_image_archive, tmp_path: Path
) -> None:
    archive, _image_id = removed_image_archive
    info = inspect_archive(archive.path)
    checked = VerifiedArchive(archive.path, archive.sha256, archive.size, info=info)
    loader = ImageLoader(docker_client, tmp_path / "state", max_expanded_bytes=info.expanded_bytes - 1)
    with pytest.raises(ImageFailure) as err:
        loader.ensure_loaded(checked)
    assert err.value.code == "IMAGE_TOO_LARGE"


def test_the_archive_is_sent_to_docker_in_large_reads(tmp_path: Path) -> None:
    """http.client would read the body 8 KiB at a time; the loader hands it 1 MiB reads."""
    path = tmp_path / "a.tar"
    path.write_bytes(b"x" * (3 * 1024 * 1024 + 5))
    with open(path, "rb") as stream:
        body = images_mod._LargeReads(stream)
        assert len(body) == path.stat().st_size  # the request keeps its Content-Length
        sizes = [len(chunk) for chunk in iter(lambda: body.read(8192), b"")]
    assert sizes == [1024 * 1024] * 3 + [5]


def test_a_staged_tar_is_what_docker_loads_and_is_removed_after(
    docker_client, removed_image_archive, load_counter, tmp_path: Path
) -> None:
    """The download's decompressed tar goes to Docker (no gunzip there), then it is deleted."""
    import gzip

    archive, image_id = removed_image_archive
    expanded = tmp_path / "fetch-x.expanded"
    expanded.write_bytes(gzip.decompress(archive.path.read_bytes()))
    sent: list[bytes] = []
    real = load_counter._real

    def recording(data, *args, **kwargs):
        sent.append(data.read(512))  # the head of the body Docker is sent
        rest = data
        return real(_Prefixed(sent[-1], rest), *args, **kwargs)

    docker_client.api.load_image = recording
    staged = VerifiedArchive(archive.path, archive.sha256, archive.size,
                             info=inspect_archive(archive.path), expanded=expanded)
    assert ImageLoader(docker_client, tmp_path / "state").ensure_loaded(staged) == image_id
    assert sent and not sent[0].startswith(b"\x1f\x8b")  # a tar, not the gzip
    assert not expanded.exists()


def test_a_staged_tar_is_removed_when_the_image_is_already_there(
    docker_client, busybox, busybox_archive, tmp_path: Path
) -> None:
    path, digest = busybox_archive
    expanded = tmp_path / "fetch-y.expanded"
    expanded.write_bytes(b"unused")
    staged = VerifiedArchive(path, digest, path.stat().st_size, info=inspect_archive(path),
                             expanded=expanded)
    assert ImageLoader(docker_client, tmp_path / "state").ensure_loaded(staged) == busybox
    assert not expanded.exists()


class _Prefixed:
    """A body whose first bytes were already read off: they are served again first."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest = head, rest

    def __len__(self) -> int:
        return len(self._rest)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._rest.read(size)

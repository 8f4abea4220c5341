"""Every layout gets the same sandbox (issue 10 item 2): only the mount targets move.

For each platform's label, from inside a real container: the root, the input
and Vana's /mnt/output are not writable, /tmp is, the layout's output is the
capped noexec filesystem, and filling it ends the job OUTPUT_TOO_LARGE at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.layouts import LAYOUT_LABEL, LAYOUTS
from engine.runner import classify
from tests.security.container_kit import busybox_job, run_capped

pytestmark = pytest.mark.docker

PROBE = r"""
out=$OUTPUT_PATH
w() { (echo x > "$1/probe") 2>/dev/null && echo yes || echo no; }
echo "$(w /) $(w "$INPUT_PATH") $(w /mnt) $(w /tmp)" > $out/writes
cp /bin/busybox $out/bb && ($out/bb true 2>/dev/null && echo yes || echo no) > $out/exec
grep " $out " /proc/mounts > $out/mount
id -u > $out/uid
dd if=/dev/zero of=$out/big bs=65536 count=200 2>/dev/null
sleep 10
"""


@pytest.mark.parametrize("layout", ["decentriq", "ocean", "parcel"])
def test_each_layout_has_the_same_sandbox(docker_client, tmp_path: Path, layout: str) -> None:
    image = busybox_job(docker_client, f"layout-{layout}", PROBE,
                        (f'LABEL {LAYOUT_LABEL}="{layout}"',))
    result, out, output = run_capped(docker_client, image, tmp_path)
    try:
        assert classify(result) == "OUTPUT_TOO_LARGE", result.logs
        assert result.duration_s < 8  # ended by the cap, not by its sleep
        assert (out / "writes").read_text().split() == ["no", "no", "no", "yes"]
        assert (out / "exec").read_text().strip() == "no"
        mount = (out / "mount").read_text().split()
        assert mount[1] == LAYOUTS[layout].output_path
        assert {"noexec", "nosuid", "nodev"} <= set(mount[3].split(","))
        assert (out / "uid").read_text().strip() == "65534"
    finally:
        output.release()

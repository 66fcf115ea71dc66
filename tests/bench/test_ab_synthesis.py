"""bench/ab_synthesis.py must time the two files it is given, not a module Python already holds."""
import sys
from pathlib import Path

import pytest

from uptal.ops import _native

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import ab_synthesis  # noqa: E402


@pytest.mark.skipif(not _native.CPU.loaded, reason="needs the built uptal._C")
def test_each_build_is_a_module_of_its_own():
    """Loading the installed file twice gives two new modules, neither the installed uptal._C: a build loaded
    under the installed module's name came back as that module, whatever its file, so every A/B compared one
    build with itself."""
    path = _native.CPU.module.__file__
    old = ab_synthesis.load_build(path, "uptal._C", "old")
    new = ab_synthesis.load_build(path, "uptal._C", "new")
    assert old is not new
    assert old is not _native.CPU.module and new is not _native.CPU.module
    assert old.__name__ == "uptal_ab_old._C" and new.__name__ == "uptal_ab_new._C"


@pytest.mark.skipif(not _native.CPU.loaded, reason="needs the built uptal._C")
def test_the_same_file_twice_is_named_noise(capsys):
    """Given the same bytes as old and new, the script says that its ratio is noise: a copied build that a failed
    rebuild had not replaced once passed for a change."""
    path = _native.CPU.module.__file__
    assert ab_synthesis.main([path, path, "--smoke", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {ab_synthesis.file_digest(path)}" in out
    assert "the same bytes" in out

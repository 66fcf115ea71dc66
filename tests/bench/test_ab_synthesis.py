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

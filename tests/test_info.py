"""`uptal info` tells the truth about what is loaded and which implementation each op uses."""
from __future__ import annotations

import os
import subprocess
import sys

from uptal.info import collect, render
from uptal.ops import _native


def test_info_reports_native_modules_and_op_choices():
    info = collect()
    assert info["native"]["uptal._C"]["loaded"] == _native.CPU.loaded
    cpu_choice = info["ops"]["synthesize"]["cpu"]["implementation"]
    assert cpu_choice == ("cpp" if _native.CPU.loaded else "reference")
    assert info["ops"]["planes_to_rgb"]["cpu"]["implementation"] == ("cpp" if _native.CPU.loaded else "numpy")
    text = render(info)
    assert "uptal._C" in text and "synthesize" in text


def test_disabling_native_modules_falls_back_to_the_reference():
    code = "from uptal.info import collect; ops = collect()['ops']; print(ops['synthesize']['cpu'], ops['planes_to_rgb'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"UPTAL_DISABLE_NATIVE": "1", "PATH": "",   # an empty PATH: no compiler either
                                 **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert "'reference'" in result.stdout and "'numpy'" in result.stdout and "UPTAL_DISABLE_NATIVE" in result.stdout


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "uptal.info"], capture_output=True, text=True, check=True)
    assert "native modules" in result.stdout

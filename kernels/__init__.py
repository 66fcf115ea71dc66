"""Triton kernels, installed as uptal.kernels. Only uptal.ops imports them (it validates every argument first).

Importing a kernel module imports triton; whether the kernels run compiled or in the CPU interpreter is fixed
when the module is imported (TRITON_INTERPRET=1 at that moment selects the interpreter).
"""

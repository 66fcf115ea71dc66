"""uptal: Pseudo Action Localization (PAL), unsupervised video pre-training for temporal action localization.

Importing uptal never compiles anything and never fails because a native module is missing; `uptal info`
says which implementation every op uses on every device.
"""
__version__ = "0.1.0"

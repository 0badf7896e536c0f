"""The Python client of a partsbin registry.

The public names are re-exported by the top-level package: ``from partsbin import
Registry``. This package imports neither :mod:`partsbin.registry` nor
:mod:`partsbin.trainer` (tests/test_packaging.py holds it to that).
"""

"""The one C extension: the token-trie walk (grammar/_native.c, Python's C API only, no
numpy headers).  Everything else is declared in pyproject.toml.  The extension is optional:
without a C compiler the install still succeeds and grammar.index walks in numpy."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("grammar._native", ["grammar/_native.c"], optional=True)])

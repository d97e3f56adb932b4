"""rdcl's version: the one place it is written.

``setup.py`` (the package metadata) and ``CMakeLists.txt`` (the C++ package's
``rdclConfigVersion.cmake``, via ``cmake/rdclVersion.cmake``) read this line with a regular
expression, so it must stay a plain ``MAJOR.MINOR.PATCH`` string literal.
"""

__version__ = "0.1.0"

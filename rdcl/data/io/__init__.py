"""Image files: reading and writing through SimpleITK, and the checks SimpleITK leaves out.

``image.py`` reads and writes images (:func:`read_image`, :func:`write_image`, :class:`Geometry`),
re-exported here, so that ``from rdcl.data.io import read_image, Geometry`` is the import;
``nifti_check.py`` verifies NIfTI files against their headers; ``lib_messages.py`` captures what
the C/C++ libraries print to stderr.
"""

from __future__ import annotations

from rdcl.data.io.image import (
    CHANNEL_SUFFIX,
    IMAGE_SUFFIXES,
    Geometry,
    ImageReadError,
    channel_file_name,
    drop_channel_suffix,
    is_dicom_folder,
    is_image_file,
    path_problem,
    preserve_locale,
    read_image,
    read_info,
    strip_suffix,
    write_image,
)

__all__ = [
    "CHANNEL_SUFFIX",
    "IMAGE_SUFFIXES",
    "Geometry",
    "ImageReadError",
    "channel_file_name",
    "drop_channel_suffix",
    "is_dicom_folder",
    "is_image_file",
    "path_problem",
    "preserve_locale",
    "read_image",
    "read_info",
    "strip_suffix",
    "write_image",
]

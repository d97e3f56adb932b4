"""Datasets on disk: the layouts rdcl reads, their checks, case subsets, and the public data sets.

``spec.py`` (the ``Case`` and ``DatasetSpec`` types), ``layout.py`` (``load_dataset``: layout
detection, ``load_case``), ``published.py`` (adapters for the published layouts),
``dataset_json.py`` (type checks of a ``dataset.json``), ``subset.py`` (named cases, case-list
files), ``download.py`` (``rdcl download``) and ``prepare.py`` (``rdcl prepare``: published
layouts -> the native one).
"""

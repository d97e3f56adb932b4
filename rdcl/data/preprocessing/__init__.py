"""Preprocessing: intensity normalisation, the training grid, resampling and the array cache.

``intensity.py`` (statistics and the normalisation schemes), ``mapping.py`` (one intensity
mapping for every data set of a run), ``spacing.py`` (the target spacing), ``resample.py``
(between voxel grids) and ``preprocess.py`` (whole cases, the cache training reads).
"""

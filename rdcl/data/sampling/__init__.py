"""Training batches: patch sampling, augmentation on the loader or the device, the loader.

``sampler.py`` (``PatchSampler``: foreground oversampling, a batch per ``(seed, step)``),
``augment.py`` (cropping, spatial and intensity augmentation), ``device_augment.py``
(``data.augment_on: device``) and ``loader.py`` (the seeded DataLoader over steps).
"""

"""rdcl.formats: the files and folders rdcl writes and reads, below the workflows that make them.

One module per format, so that reading a file never imports the workflow that wrote it
(predicting from a checkpoint does not import training, running an exported file does not import
the exporter):

- :mod:`rdcl.formats.checkpoint`: checkpoint files (``*.ckpt``): atomic writes, safe validated
  reads, the RNG-state entry.
- :mod:`rdcl.formats.run_folder`: a training run folder's file names and
  :func:`~rdcl.formats.run_folder.find_checkpoint`.
- :mod:`rdcl.formats.run_log`: the per-step ``log.jsonl``, its writer and its reader.
- :mod:`rdcl.formats.exported`: the metadata every exported predictor carries, and reading it
  from ``.ts`` and ``.pt2`` files.
- :mod:`rdcl.formats.cache`: the preprocessing cache's file names and its ``manifest.json``.

The package imports nothing at import time; import the module you need.
"""

"""Whole datasets: :func:`~attribkit.datasets.run.explain_dataset` streams a dataset
through ``explain`` into a chunked, resumable store (:mod:`attribkit.datasets.store`),
sharded by rank under ``torchrun`` (:mod:`attribkit.datasets.sharding`); image
folders with their bad files are :mod:`attribkit.datasets.folder`.

Nothing is imported here: ``ak.explain_dataset``, ``ak.open_store`` and
``ak.image_folder`` reach the modules lazily, so reading a store needs zarr but
not torch.
"""

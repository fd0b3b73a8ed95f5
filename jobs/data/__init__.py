"""Datasets for one training job: built-in sets, files on disk, the validation split."""

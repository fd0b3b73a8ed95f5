"""The SLURM backend through submitit, and the dev cluster's script."""

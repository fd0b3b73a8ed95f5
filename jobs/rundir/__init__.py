"""What a run leaves on disk, and its one writer: run dir, results (Parquet), checkpoints, claims,
TensorBoard events."""

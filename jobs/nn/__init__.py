"""The networks a job trains: models, activations, losses, and deep learning in target space."""

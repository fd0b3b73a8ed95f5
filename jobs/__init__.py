"""One training job: data, model, target strategy, training loop, results."""

"""The noise study: evaluate a trained model on any backend, sweep noise and shots, report runs."""

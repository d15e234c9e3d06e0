"""Search: the space compiler (a sweep's `space` as Optuna define-by-run), samplers and trial schedulers."""

"""Running a sweep: its plan and on-disk state, the driver, the trial worker, Ray Tune's hooks, signals,
and submission to a cluster."""

"""rtseg beyond one machine, on Ray: Ray places the work, rtseg's own engine does it on each worker.

- ``archive``: a folder of videos spread one file per task over long-lived workers (each loads the model once).
- ``fleet``: a ``streams:`` list of cameras spread over workers, each a multi-stream engine for its group;
  a worker that dies is restarted by Ray and its cameras resume as new recording segments.
- ``front``: what ``rtseg --cluster auto|ADDRESS`` runs.

Ray is an optional extra (``pip install -e ".[cluster]"``); nothing here imports it before a cluster run starts.
"""

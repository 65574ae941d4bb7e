"""The browser page: ``rtseg serve`` runs a FastAPI app over one shared model (needs the ``[web]`` extra).

A front door beside the CLI: it uses ``rtseg.api`` and the stages, and only
``rtseg.cli`` imports it. Modules: ``serve`` (command line), ``app`` (routes),
``sharing`` (one model, a fair lock, bounded admission), ``images`` (image
results kept for re-filtering), ``videos`` (background pipeline jobs),
``live`` (webcam frames over a WebSocket), ``workspace`` (private temporary
files and size-capped uploads), ``security`` (host and origin checks).
"""

"""The HTTP service: a FastAPI app over the pipeline, with the web form at ``/``."""

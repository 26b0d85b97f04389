"""Serving: FastAPI apps (labelling tool, HTTP service) and their static pages."""

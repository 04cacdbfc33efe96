"""Pydantic request/response models (the API contract); never mixed into ORM classes."""

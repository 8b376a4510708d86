"""The STAC side of twinmesh: catalogue builder, offline validation, STAC API service."""

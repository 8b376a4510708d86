"""The directory Flower builds the app bundle (FAB) from: its own pyproject.toml and the
``twinmesh_fl`` package."""

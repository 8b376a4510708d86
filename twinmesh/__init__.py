"""The twinmesh CLI and the supervisor behind `twinmesh up`."""

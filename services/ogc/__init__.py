"""OGC API for the twins: pygeoapi served as an ASGI app, its configuration generated
from core, with twinmesh's plugins — one process per capability over core's job store,
EDR and Coverages over the twins' Zarr datacubes (CoverageJSON encoded from numpy), and
the warning log, regions and gauges as Features."""

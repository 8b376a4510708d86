"""Regions on grids: which cells a region covers, and area means over them."""

from __future__ import annotations

import numpy as np
import xarray as xr
from shapely import contains_xy
from shapely.geometry import shape

from twinmesh.core.twin import Region

__all__ = ["region_mask", "region_means"]


def region_mask(region: Region, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean (y, x) mask of the grid cells whose centre lies in the region."""
    xx, yy = np.meshgrid(x, y)
    return contains_xy(shape(region.geometry), xx, yy)


def region_means(cube: xr.DataArray, regions: list[Region]) -> np.ndarray:
    """Area-mean series of a (t, y, x) cube for each region, as (region, t)."""
    values = np.asarray(cube.transpose("t", "y", "x").values)
    x, y = cube["x"].values, cube["y"].values
    out = []
    for r in regions:
        mask = region_mask(r, x, y)
        if not mask.any():
            raise ValueError(f"region {r.id!r} covers no cell of the grid")
        out.append(np.nanmean(values[:, mask], axis=1))
    return np.stack(out)

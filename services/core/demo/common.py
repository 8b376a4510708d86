"""Building blocks every demo basin twin shares: CF datacubes with provenance, the
reanalysis with return levels, gridded SPI."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS

from twinmesh.core.ensembles import esp_dataset
from twinmesh.core.hydrology.calibration import CalibrationResult
from twinmesh.core.hydrology.drought import spi_monthly
from twinmesh.core.hydrology.gr4j import GR4JParams
from twinmesh.core.hydrology.snow import CemaNeigeParams
from twinmesh.core.twin import DatasetInfo, Provider, Region

__all__ = [
    "Step",
    "TWINMESH",
    "RETURN_PERIODS",
    "SPI_SCALE_MONTHS",
    "with_crs",
    "provenance",
    "forcing_dataset",
    "reanalysis_dataset",
    "grid_spi",
    "spi_dataset",
    "dataset_info",
    "ESP_LEAD_DAYS",
    "esp_forcing_dataset",
    "snow_model",
]

#: progress(step, done, total): how builds report long work (the CLI draws bars).
Step = Callable[[str, int, int], None]

RETURN_PERIODS = (2, 5, 20)
SPI_SCALE_MONTHS = 3
#: How far ahead the demo twins' ESP ensemble forcing reaches (the forecast maximum).
ESP_LEAD_DAYS = 30
#: Forecasts are issued after a year of model spin-up.
SPIN_UP_DAYS = 365

TWINMESH = Provider(
    name="twinmesh",
    roles=["processor", "host"],
    description="Derived the grid, calibrated the model, computes forecasts and warnings.",
)

_TIME = {"standard_name": "time", "axis": "T"}
_DISCHARGE = {"standard_name": "water_volume_transport_in_river_channel", "units": "m3 s-1"}


def with_crs(ds: xr.Dataset) -> xr.Dataset:
    """Attach the WGS84 grid mapping (CF ``spatial_ref``) the cube's variables name."""
    crs = CRS.from_epsg(4326)
    return ds.assign_coords(
        spatial_ref=xr.DataArray(0, attrs={**crs.to_cf(), "spatial_ref": crs.to_wkt()})
    )


def provenance(
    ds: xr.Dataset,
    *,
    twin_id: str,
    licence: str,
    title: str,
    source: str,
    history: str,
    generated: bool,
    seed: int | None = None,
) -> xr.Dataset:
    """CF global attributes saying what the cube is, where it came from, and whether
    it is observed or generated."""
    attrs: dict[str, object] = {
        "Conventions": "CF-1.10",
        "title": title,
        "institution": "twinmesh demo twin",
        "source": source,
        "license": licence,
        "history": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {history}",
        "generated": "yes" if generated else "no (observed)",
        "twinmesh_twin": twin_id,
    }
    if seed is not None:
        attrs["random_seed"] = seed
    ds.attrs.update(attrs)
    return ds


def forcing_dataset(
    time: pd.DatetimeIndex,
    x: np.ndarray,
    y: np.ndarray,
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
) -> xr.Dataset:
    """The daily forcing cube (t, y, x): precipitation and mean air temperature."""
    coords = {
        "t": ("t", time.values, _TIME),
        "y": ("y", y, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "x": ("x", x, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
    }
    ds = xr.Dataset(
        {
            "precipitation": (
                ("t", "y", "x"),
                precipitation_mm.astype("float32"),
                {
                    "standard_name": "lwe_thickness_of_precipitation_amount",
                    "long_name": "daily precipitation",
                    "units": "mm",
                    "cell_methods": "t: sum (interval: 1 day)",
                    "grid_mapping": "spatial_ref",
                },
            ),
            "temperature": (
                ("t", "y", "x"),
                temperature_c.astype("float32"),
                {
                    "standard_name": "air_temperature",
                    "long_name": "daily mean air temperature",
                    "units": "degC",
                    "cell_methods": "t: mean (interval: 1 day)",
                    "grid_mapping": "spatial_ref",
                },
            ),
        },
        coords=coords,
    )
    return with_crs(ds).chunk({"t": 366, "y": -1, "x": -1})


def reanalysis_dataset(
    time: pd.DatetimeIndex,
    discharge_m3s: np.ndarray,
    return_levels_m3s: np.ndarray,
    regions: Sequence[Region],
    periods: Sequence[int] = RETURN_PERIODS,
) -> xr.Dataset:
    """Simulated discharge (t, region) and return levels (region, return_period)."""
    return xr.Dataset(
        {
            "discharge_m3s": (("t", "region"), discharge_m3s.astype("float32"), _DISCHARGE),
            "return_level_m3s": (
                ("region", "return_period"),
                return_levels_m3s.astype("float32"),
                {
                    "long_name": "discharge of the return period (Gumbel fit, annual maxima)",
                    "units": "m3 s-1",
                },
            ),
        },
        coords={
            "t": ("t", time.values, _TIME),
            "region": ("region", [r.id for r in regions]),
            "region_name": ("region", [r.name for r in regions]),
            "return_period": ("return_period", list(periods), {"units": "years"}),
        },
    )


def grid_spi(
    monthly_mm: np.ndarray,
    first_year: int,
    *,
    calibration_years: tuple[int, int] | None = None,
) -> np.ndarray:
    """SPI of every cell of a monthly precipitation grid (month, y, x); NaN cells stay NaN."""
    out = np.full(monthly_mm.shape, np.nan, dtype="float32")
    with warnings.catch_warnings():
        # Demo records are shorter than the 30 years WMO recommends; the datasets
        # say so in their attributes instead of warning once per cell.
        warnings.filterwarnings("ignore", message=".*[Cc]alibration period.*")
        for j in range(monthly_mm.shape[1]):
            for i in range(monthly_mm.shape[2]):
                series = monthly_mm[:, j, i]
                if np.isnan(series).all():
                    continue
                out[:, j, i] = spi_monthly(
                    series,
                    first_year,
                    scale_months=SPI_SCALE_MONTHS,
                    calibration_years=calibration_years,
                )
    return out


def spi_dataset(spi: np.ndarray, months: pd.DatetimeIndex, x: xr.DataArray, y: xr.DataArray):
    """The SPI cube (t, y, x) on the forcing grid."""
    ds = xr.Dataset(
        {
            "spi": (
                ("t", "y", "x"),
                spi,
                {
                    "long_name": f"standardized precipitation index, {SPI_SCALE_MONTHS}-month",
                    "units": "1",
                    "grid_mapping": "spatial_ref",
                },
            )
        },
        coords={"t": ("t", months.values, _TIME), "y": y, "x": x},
    )
    return with_crs(ds).chunk({"t": -1, "y": -1, "x": -1})


def snow_model(result: CalibrationResult) -> tuple[GR4JParams, CemaNeigeParams, float]:
    """GR4J parameters, CemaNeige parameters and snow threshold of a calibration made
    with temperature (the demo twins always calibrate with snow)."""
    if result.snow is None or result.g_threshold_mm is None:
        raise ValueError("the calibration was made without temperature: no snow routine")
    return result.params, result.snow, float(result.g_threshold_mm)


def esp_forcing_dataset(
    time: pd.DatetimeIndex,
    regions: Sequence[Region],
    precipitation_mm: np.ndarray,
    temperature_c: np.ndarray,
    *,
    twin_id: str,
    twin_name: str,
    licence: str,
    note: str = "",
) -> xr.Dataset:
    """The ESP ensemble forcing of every issue day after the spin-up year (see
    :mod:`twinmesh.core.ensembles`), from region-mean forcing (region, t), with its
    provenance."""
    first = (time[0] + pd.Timedelta(days=SPIN_UP_DAYS)).date()
    ds = esp_dataset(
        time,
        list(regions),
        precipitation_mm,
        temperature_c,
        first_issue=first,
        lead_days=ESP_LEAD_DAYS,
    )
    return provenance(
        ds,
        twin_id=twin_id,
        licence=licence,
        title=f"{twin_name} ESP ensemble forcing (historical traces per region)",
        source="twinmesh, from the region means of the forcing cube",
        history=str(ds.attrs["ensemble_method"]) + note,
        generated=True,
    )


#: What every basin twin's datacubes are, apart from twin-specific wording.
_DATASET_KINDS: dict[str, dict[str, object]] = {
    "forcing": {
        "title": "Daily forcing grid (precipitation, temperature)",
        "variables": {"precipitation": "mm", "temperature": "degC"},
        "generated": True,
        "keywords": ["precipitation", "temperature", "forcing", "hydrology"],
    },
    "discharge-observed": {
        "title": "Observed daily discharge",
        "variables": {"discharge_m3s": "m3 s-1"},
        "generated": False,
        "keywords": ["discharge", "gauge", "observations"],
    },
    "discharge-reanalysis": {
        "title": "Simulated sub-basin discharge and return levels",
        "variables": {"discharge_m3s": "m3 s-1", "return_level_m3s": "m3 s-1"},
        "generated": True,
        "keywords": ["discharge", "simulation", "return period", "flood"],
    },
    "spi-3": {
        "title": "Standardized precipitation index (3-month)",
        "variables": {"spi": "1"},
        "generated": True,
        "keywords": ["drought", "SPI"],
    },
    "forcing-ensemble": {
        "title": "Ensemble forcing of forecasts (ESP historical traces per region)",
        "variables": {"precipitation": "mm", "temperature": "degC"},
        "generated": True,
        "keywords": ["ensemble", "forecast", "ESP", "forcing"],
    },
}


#: The role each of the standard datacubes plays (twinmesh.core.twin.DATASET_ROLES).
_DATASET_ROLE = {
    "forcing": "forcing",
    "discharge-observed": "discharge-observed",
    "discharge-reanalysis": "discharge-reanalysis",
    "spi-3": "drought-index",
    "forcing-ensemble": "forcing-ensemble",
}


def dataset_info(
    dataset_id: str,
    *,
    description: str,
    provenance: str,
    licence: str,
    providers: list[Provider],
    title: str | None = None,
) -> DatasetInfo:
    """The description of one of a basin twin's standard datacubes."""
    kind = _DATASET_KINDS[dataset_id]
    return DatasetInfo(
        id=dataset_id,
        role=_DATASET_ROLE[dataset_id],
        title=title or str(kind["title"]),
        description=description,
        variables=kind["variables"],  # type: ignore[arg-type]
        license=licence,
        providers=providers,
        provenance=provenance,
        generated=bool(kind["generated"]),
        keywords=kind["keywords"],  # type: ignore[arg-type]
    )
